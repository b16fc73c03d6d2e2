// model_bench: one model's speed and memory, in training (forward + backward) or in generation.
//
//   model_bench --config configs/X.json [--device cpu|cuda] [--dtype bf16|f32]
//               [--batch B] [--length L] [--steps N] [--warmup N]           training mode
//   model_bench --config configs/X.json --generate [--device cpu|cuda] [--dtype bf16|f32]
//               [--batches 1,16] [--prompts 512,2048,8192] [--decode N]     generation mode
//
// X is a model config, or a training config whose "model" section is one (configs/*-small.json).
// Training mode: forward and backward of the mean next-token loss on random ids [B, L] (the
// model in train mode, gradients dropped after each step), N timed steps after the warm-up, each
// closed by a device synchronize; prints the median step, tokens/s and the peak memory (GPU: the
// caching allocator's peak in use; CPU: the process's peak resident set, VmHWM).
// Generation mode, per batch size and prompt length: a fresh state is filled with a random
// prompt by one parallel prefill (LanguageModel::prefill; it leaves the state that step-by-step
// feeding would), then N greedy tokens are decoded (argmax on the device, fed back without a host
// round trip); both phases are timed with a device synchronize after an untimed warm-up (the
// shortest prompt and 2 steps). Prints prefill and decode tokens/s and the peak memory per
// (batch, context): for the SSMs (constant-size state) decode speed must not fall with the
// context; LLaMA's KV cache grows with it.
// Defaults: GPU bf16, batch 1 x 2048, 5 steps after 1 of warm-up; generation at batch 1 and 16
// after 512, 2048 and 8192 tokens, 64 decoded. CPU f32, batch 1 x 256; generation at batch 1 and
// 4 after 64 and 256 tokens.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/grad_mode.hpp"
#include "cuda/backend.hpp"
#include "models/language_model.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/reduce.hpp"
#if DSSM_WITH_CUDA
#include "cuda/allocator.hpp"
#endif

using namespace dssm;

namespace {

struct Options {
  std::string config;
  Device device = Device::cpu();
  DType dtype = DType::f32;
  int64_t batch = 0, length = 0, steps = 0, warmup = 1, decode = 0;
  bool generate = false;
  std::vector<int64_t> batches, prompts;
};

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) values.push_back(std::stoll(item));
  return values;
}

Options parse(int argc, char** argv) {
  Options o;
  std::string dtype, batches, prompts;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto value = [&]() -> std::string {
      DSSM_CHECK(i + 1 < argc, "model_bench", "{} needs a value", flag);
      return argv[++i];
    };
    if (flag == "--config")
      o.config = value();
    else if (flag == "--device")
      o.device = Device::parse(value());
    else if (flag == "--dtype")
      dtype = value();
    else if (flag == "--batch")
      o.batch = std::stoll(value());
    else if (flag == "--length")
      o.length = std::stoll(value());
    else if (flag == "--steps")
      o.steps = std::stoll(value());
    else if (flag == "--warmup")
      o.warmup = std::stoll(value());
    else if (flag == "--generate")
      o.generate = true;
    else if (flag == "--batches")
      batches = value();
    else if (flag == "--prompts")
      prompts = value();
    else if (flag == "--decode")
      o.decode = std::stoll(value());
    else
      fail("model_bench", "unknown option '{}' (see the comment at the top of model_bench.cpp)",
           flag);
  }
  DSSM_CHECK(!o.config.empty(), "model_bench",
             "--config is required (e.g. configs/densretnet-350m.json)");
  const bool gpu = o.device.is_cuda();
  o.dtype = dtype_from_name(dtype.empty() ? (gpu ? "bf16" : "f32") : dtype);
  auto or_default = [](int64_t& v, int64_t fallback) { v = v ? v : fallback; };
  or_default(o.batch, 1);
  or_default(o.length, gpu ? 2048 : 256);
  or_default(o.steps, 5);
  or_default(o.decode, 64);
  o.batches = parse_list(batches.empty() ? (gpu ? "1,16" : "1,4") : batches);
  o.prompts = parse_list(prompts.empty() ? (gpu ? "512,2048,8192" : "64,256") : prompts);
  std::sort(o.prompts.begin(), o.prompts.end());
  DSSM_CHECK(o.batch > 0 && o.length > 0 && o.steps > 0 && o.warmup >= 0 && o.decode > 0,
             "model_bench",
             "expected positive --batch, --length, --steps, --decode, got {}, {}, {}, {}", o.batch,
             o.length, o.steps, o.decode);
  for (int64_t v : o.batches) DSSM_CHECK(v > 0, "model_bench", "expected --batches > 0, got {}", v);
  for (int64_t v : o.prompts) DSSM_CHECK(v > 0, "model_bench", "expected --prompts > 0, got {}", v);
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

Tensor random_ids(std::mt19937_64& rng, int64_t batch, int64_t length, int64_t vocab,
                  Device device) {
  std::vector<int64_t> ids(static_cast<size_t>(batch * length));
  for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
  return Tensor::from_vector(ids, {batch, length}).to(device);
}

void reset_peak(const Options& o) {
#if DSSM_WITH_CUDA
  if (o.device.is_cuda()) cuda::reset_peak_stats();
#else
  (void)o;
#endif
}

// GiB: the allocator's peak in use on the GPU, the process's peak resident set on the CPU.
std::string peak_memory(const Options& o) {
#if DSSM_WITH_CUDA
  if (o.device.is_cuda()) {
    return fmt::format("{:.2f} GiB",
                       static_cast<double>(cuda::allocator_stats().peak_in_use_bytes) / (1 << 30));
  }
#endif
  (void)o;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::stringstream fields(line.substr(6));
      double kib = 0;
      fields >> kib;
      return fmt::format("{:.2f} GiB RSS", kib / (1 << 20));
    }
  }
  return "-";
}

void bench_training(models::LanguageModel& model, const Options& o, int64_t vocab) {
  std::mt19937_64 rng(1);
  model.train();
  fmt::print("{:>6} {:>7} {:>12} {:>12} {:>14}\n", "batch", "length", "ms/step", "tokens/s",
             "peak memory");
  std::vector<double> times;
  for (int64_t step = -o.warmup; step < o.steps; ++step) {
    if (step == 0) reset_peak(o);
    const Tensor ids = random_ids(rng, o.batch, o.length + 1, vocab, o.device);
    cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    const Tensor logits = model.forward(ids.narrow(1, 0, o.length).contiguous());
    const Tensor loss = cross_entropy(logits.reshape({o.batch * o.length, vocab}),
                                      ids.narrow(1, 1, o.length).contiguous().reshape({-1}));
    loss.backward();
    cuda::synchronize();
    if (step >= 0) times.push_back(seconds_since(start));
    for (const Tensor& p : model.parameters()) p.zero_grad();
  }
  const double step_s = median(times);
  fmt::print("{:>6} {:>7} {:>12.2f} {:>12.0f} {:>14}\n", o.batch, o.length, step_s * 1e3,
             static_cast<double>(o.batch * o.length) / step_s, peak_memory(o));
}

struct GenerationTimes {
  double prefill_s = 0, decode_s = 0;
};

// A fresh state, prefilled with `prompt` [batch, context], then `decode` greedy tokens, each fed
// back on the device. Each phase closed by a device synchronize.
GenerationTimes prefill_and_decode(models::LanguageModel& model, const Tensor& prompt,
                                   int64_t decode) {
  auto state = model.new_state(prompt.size(0));
  GenerationTimes times;
  cuda::synchronize();
  auto start = std::chrono::steady_clock::now();
  Tensor next = argmax(model.prefill(prompt, *state), -1);  // the token each row feeds next
  cuda::synchronize();
  times.prefill_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (int64_t t = 0; t < decode; ++t) next = argmax(model.step(next, *state), -1);
  cuda::synchronize();
  times.decode_s = seconds_since(start);
  return times;
}

void bench_generation(models::LanguageModel& model, const Options& o, int64_t vocab) {
  NoGradGuard no_grad;
  model.eval();
  std::mt19937_64 rng(2);
  fmt::print("{:>6} {:>8} {:>16} {:>12} {:>16} {:>10} {:>14}\n", "batch", "context",
             "prefill tok/s", "prefill ms", "decode tok/s", "ms/token", "peak memory");
  for (int64_t batch : o.batches) {
    // Warm-up: one-time costs (library handles, allocator growth) out of the timed rounds.
    prefill_and_decode(model, random_ids(rng, batch, o.prompts.front(), vocab, o.device), 2);
    for (int64_t context : o.prompts) {
      const Tensor prompt = random_ids(rng, batch, context, vocab, o.device);
      reset_peak(o);
      const GenerationTimes t = prefill_and_decode(model, prompt, o.decode);
      fmt::print("{:>6} {:>8} {:>16.1f} {:>12.1f} {:>16.1f} {:>10.3f} {:>14}\n", batch, context,
                 static_cast<double>(batch * context) / t.prefill_s, t.prefill_s * 1e3,
                 static_cast<double>(batch * o.decode) / t.decode_s, t.decode_s * 1e3 / o.decode,
                 peak_memory(o));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.device.is_cuda()) cuda::require_device(o.device.index);
    std::ifstream in(o.config);
    DSSM_CHECK(in.good(), "model_bench", "cannot open '{}'", o.config);
    const nlohmann::json file = nlohmann::json::parse(in);
    const nlohmann::json config = file.contains("model") ? file.at("model") : file;
    auto model = models::make_model(config, 0);
    model->to(o.dtype);
    model->to(o.device);
    const int64_t vocab = model->config().vocab_size;
    fmt::print("{} ({}, {:.2f}M parameters), {} on {}\n", o.config, config.value("arch", "?"),
               static_cast<double>(model->num_parameters()) / 1e6, dtype_name(o.dtype),
               o.device.str());
    if (o.generate) {
      fmt::print(
          "generation: parallel prefill of the prompt, then {} greedy tokens decoded per row\n",
          o.decode);
      bench_generation(*model, o, vocab);
    } else {
      fmt::print("training step (forward + backward), median of {} after {} warm-up\n", o.steps,
                 o.warmup);
      bench_training(*model, o, vocab);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "model_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
