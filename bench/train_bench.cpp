// Training throughput: the trainer's full optimizer step (forward, backward, global norm,
// fused AdamW, master-weight copy; train/trainer.cpp) on random tokens, timed after warm-up.
//
//   build/train_bench                      CPU: the five tiny configs, f32, sequences of 256
//   build/train_bench --device cuda        GPU: the five 350M-class models at sequence 2048
//                                          in bf16, 50 steps after 5 of warm-up
// Options: --configs A.json,B.json  --seq-len L  --batch B  --steps N  --warmup N
//          --dtype f32|bf16  --peak-tflops X (790: the H100's measured bf16 GEMM peak)  --json
// Prints, per model: parameters, tokens/s, ms per step, MFU (6 x GEMM weights per token, see
// train/flops.hpp) and, on the GPU, the allocator's peak memory.
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/backend.hpp"
#include "models/language_model.hpp"
#include "train/accumulate.hpp"
#include "train/adamw.hpp"
#include "train/clip.hpp"
#include "train/config.hpp"
#include "train/flops.hpp"
#include "train/master_weights.hpp"
#if DSSM_WITH_CUDA
#include "cuda/allocator.hpp"
#endif

using namespace dssm;

namespace {

struct Options {
  Device device = Device::cpu();
  std::vector<std::string> configs;
  int64_t seq_len = 0, batch = 0, steps = 0, warmup = 0;
  DType dtype = DType::f32;
  double peak_tflops = 790;
  bool json = false;
};

Options parse(int argc, char** argv) {
  Options o;
  std::string configs;
  bool dtype_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto value = [&]() -> std::string {
      DSSM_CHECK(i + 1 < argc, "train_bench", "{} needs a value", flag);
      return argv[++i];
    };
    if (flag == "--device")
      o.device = Device::parse(value());
    else if (flag == "--configs")
      configs = value();
    else if (flag == "--seq-len")
      o.seq_len = std::stoll(value());
    else if (flag == "--batch")
      o.batch = std::stoll(value());
    else if (flag == "--steps")
      o.steps = std::stoll(value());
    else if (flag == "--warmup")
      o.warmup = std::stoll(value());
    else if (flag == "--dtype")
      o.dtype = dtype_from_name(value()), dtype_given = true;
    else if (flag == "--peak-tflops")
      o.peak_tflops = std::stod(value());
    else if (flag == "--json")
      o.json = true;
    else
      fail("train_bench", "unknown option '{}' (see the comment at the top of train_bench.cpp)",
           flag);
  }
  const bool gpu = o.device.is_cuda();
  if (configs.empty()) {
    configs = gpu ? "configs/densretnet-350m.json,configs/retnet-350m.json,"
                    "configs/densemamba-360m.json,configs/mamba-360m.json,configs/llama-350m.json"
                  : "configs/densretnet-tiny.json,configs/retnet-tiny.json,"
                    "configs/densemamba-tiny.json,configs/mamba-tiny.json,configs/llama-tiny.json";
  }
  std::stringstream list(configs);
  for (std::string item; std::getline(list, item, ',');) o.configs.push_back(item);
  if (o.seq_len == 0) o.seq_len = gpu ? 2048 : 256;
  if (o.batch == 0) o.batch = gpu ? 4 : 8;
  if (o.steps == 0) o.steps = gpu ? 50 : 10;
  if (o.warmup == 0) o.warmup = gpu ? 5 : 2;
  if (!dtype_given) o.dtype = gpu ? DType::bf16 : DType::f32;
  return o;
}

struct Result {
  std::string config, arch;
  int64_t parameters = 0;
  double tokens_per_s = 0, ms_per_step = 0, mfu = 0, loss = 0;
  double peak_gib = 0;
};

Result bench(const Options& o, const std::string& config_path) {
  const nlohmann::json config = train::load_config_json(config_path);
  auto model = models::make_model(config.at("model"), 0);
  const int64_t vocab = model->config().vocab_size;
  model->to(o.device);
  train::MasterWeights weights(*model, o.dtype);
  train::AdamW optimizer(weights.parameters(), {});
  model->train();

  std::mt19937 rng(0);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(o.batch * (o.seq_len + 1)));
  const auto one_step = [&] {
    for (auto& t : ids) t = token(rng);
    const train::Batch batch = train::make_batch(ids, o.batch, o.seq_len, o.device);
    const double loss = train::accumulate_gradients(*model, weights, {batch});
    const double norm = train::global_grad_norm(weights.tensors());
    optimizer.step(1e-4, train::clip_coefficient(norm, 1.0));
    weights.copy_to_model();
    weights.zero_grad();
    cuda::synchronize();
    return loss;
  };
  for (int64_t i = 0; i < o.warmup; ++i) one_step();
#if DSSM_WITH_CUDA
  if (o.device.is_cuda()) cuda::reset_peak_stats();
#endif
  Result r{
      .config = config_path, .arch = model->config().arch, .parameters = model->num_parameters()};
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.steps; ++i) r.loss = one_step();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.ms_per_step = 1e3 * seconds / static_cast<double>(o.steps);
  r.tokens_per_s = static_cast<double>(o.batch * o.seq_len * o.steps) / seconds;
  r.mfu = r.tokens_per_s * train::flops_per_token(*model) / (o.peak_tflops * 1e12);
#if DSSM_WITH_CUDA
  if (o.device.is_cuda()) r.peak_gib = cuda::allocator_stats().peak_in_use_bytes / 1073741824.0;
#endif
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.device.is_cuda()) cuda::require_device(o.device.index);
    if (!o.json) {
      fmt::print("training step on {} ({}), batch {} x {} tokens, {} steps after {} warm-up\n",
                 o.device.str(), dtype_name(o.dtype), o.batch, o.seq_len, o.steps, o.warmup);
      fmt::print("{:<36} {:>10} {:>12} {:>10} {:>7} {:>10}\n", "config", "params", "tokens/s",
                 "ms/step", "MFU", "peak GiB");
    }
    for (const std::string& config : o.configs) {
      const Result r = bench(o, config);
      if (o.json) {
        fmt::print("{}\n", nlohmann::json{{"config", r.config},
                                          {"arch", r.arch},
                                          {"device", o.device.str()},
                                          {"dtype", dtype_name(o.dtype)},
                                          {"batch", o.batch},
                                          {"seq_len", o.seq_len},
                                          {"parameters", r.parameters},
                                          {"tokens_per_s", r.tokens_per_s},
                                          {"ms_per_step", r.ms_per_step},
                                          {"mfu", r.mfu},
                                          {"peak_gib", r.peak_gib},
                                          {"last_loss", r.loss}}
                               .dump());
      } else {
        const bool gpu = o.device.is_cuda();  // MFU and memory mean something on the GPU only
        fmt::print("{:<36} {:>9.1f}M {:>12.0f} {:>10.1f} {:>7} {:>10}\n", r.config,
                   r.parameters / 1e6, r.tokens_per_s, r.ms_per_step,
                   gpu ? fmt::format("{:.1f}%", 100 * r.mfu) : "-",
                   gpu ? fmt::format("{:.2f}", r.peak_gib) : "-");
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
