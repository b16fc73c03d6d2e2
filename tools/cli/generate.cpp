// dssm generate --checkpoint DIR (--prompt-ids "1 2 3" | --prompt TEXT --tokenizer X.model)
//               [--max-new-tokens 64] [--temperature 1] [--top-k 0] [--top-p 1] [--seed 0]
//               [--device cpu|cuda]
// Samples a continuation of a prompt:
//   prefill  the prompt runs through the parallel form in one pass (LanguageModel::prefill),
//            which leaves the recurrent state (SSM and conv states, retention states, KV cache)
//            exactly where feeding it token by token through step would; the logits of its last
//            token give the first new token;
//   decode   each sampled token is fed back through step: O(1) work and memory per token for
//            Mamba, DenseMamba and the retention models.
// Prints the new tokens as they come (decoded text with a tokenizer, ids otherwise), then the
// speed of both phases in tokens/s.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>

#include "autograd/grad_mode.hpp"
#include "cuda/backend.hpp"
#include "models/checkpoint.hpp"
#include "tensor/error.hpp"
#include "tools/cli/commands.hpp"
#include "train/data/tokenizer.hpp"

namespace dssm::cli {
namespace {

struct Options {
  std::string checkpoint;
  std::string prompt_ids;
  std::string prompt;
  std::string tokenizer;
  int64_t max_new_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: the whole vocabulary
  double top_p = 1.0;  // 1: no nucleus cut
  uint64_t seed = 0;
  std::string device = "cpu";
};

// The next token from `logits`: the argmax when temperature <= 0; otherwise a draw (with the
// uniform u in [0, 1)) from softmax(logits / temperature), restricted to the top_k most likely
// tokens and then to the smallest set of them whose probability reaches top_p.
int64_t sample(const std::vector<double>& logits, const Options& o, double u) {
  std::vector<int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&](int64_t a, int64_t b) { return logits[a] > logits[b]; };
  if (o.temperature <= 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  const size_t keep =
      o.top_k > 0 ? std::min(order.size(), static_cast<size_t>(o.top_k)) : order.size();
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    more_likely);
  order.resize(keep);
  std::vector<double> p;
  for (int64_t v : order) p.push_back(std::exp((logits[v] - logits[order[0]]) / o.temperature));
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  double mass = 0;
  size_t nucleus = 0;
  while (nucleus < p.size() && (nucleus == 0 || mass < o.top_p * total)) mass += p[nucleus++];
  double target = u * mass;
  for (size_t i = 0; i < nucleus; ++i) {
    if (target < p[i]) return order[i];
    target -= p[i];
  }
  return order[nucleus - 1];
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::istringstream in(text);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    int32_t id = 0;
    try {
      id = std::stoi(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DSSM_CHECK(used == word.size(), "generate", "--prompt-ids: '{}' is not an integer token id",
               word);
    ids.push_back(id);
  }
  return ids;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run(const Options& o) {
  DSSM_CHECK(o.prompt_ids.empty() != o.prompt.empty(), "generate",
             "give exactly one of --prompt-ids and --prompt");
  DSSM_CHECK(o.prompt.empty() || !o.tokenizer.empty(), "generate", "--prompt needs --tokenizer");
  DSSM_CHECK(o.top_p > 0 && o.top_p <= 1, "generate", "--top-p must be in (0, 1], got {}", o.top_p);
  const Device device = Device::parse(o.device);
  if (device.is_cuda()) cuda::require_device(device.index);

  std::unique_ptr<data::Tokenizer> tokenizer;
  if (!o.tokenizer.empty()) tokenizer = std::make_unique<data::Tokenizer>(o.tokenizer);
  std::vector<int32_t> prompt = o.prompt.empty() ? parse_ids(o.prompt_ids) : std::vector<int32_t>{};
  if (!o.prompt.empty()) {
    prompt = {tokenizer->bos_id()};  // sequences start with <bos>, as in training
    const auto text = tokenizer->encode(o.prompt);
    prompt.insert(prompt.end(), text.begin(), text.end());
  }
  DSSM_CHECK(!prompt.empty(), "generate", "the prompt has no tokens");

  auto model = models::load_checkpoint(o.checkpoint, device);
  model->eval();
  const int64_t vocab = model->config().vocab_size;
  for (int32_t id : prompt) {
    DSSM_CHECK(id >= 0 && id < vocab, "generate",
               "prompt token {} is outside the vocabulary [0, {})", id, vocab);
  }
  NoGradGuard no_grad;
  auto state = model->new_state(1);
  auto feed = [&](int64_t id) {
    return model->step(Tensor::from_vector<int64_t>({id}, {1}, DType::i64, device), *state)
        .to_vector<double>();
  };

  auto start = std::chrono::steady_clock::now();
  const auto length = static_cast<int64_t>(prompt.size());
  std::vector<double> logits =
      model->prefill(Tensor::from_vector(prompt, {1, length}).to(device), *state)
          .to_vector<double>();
  const double prefill_s = seconds_since(start);

  Generator gen(o.seed);
  std::vector<int32_t> generated;
  std::string printed;  // decoded text printed so far (decoding is not per-token: spaces merge)
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const double u = Tensor::rand({1}, gen, DType::f64).item();
    const auto next = static_cast<int32_t>(sample(logits, o, u));
    if (tokenizer && next == tokenizer->eos_id()) break;
    generated.push_back(next);
    if (tokenizer) {
      const std::string text = tokenizer->decode(generated);
      fmt::print("{}", text.substr(std::min(printed.size(), text.size())));
      printed = text;
    } else {
      fmt::print("{}{}", i == 0 ? "" : " ", next);
    }
    std::fflush(stdout);
    if (i + 1 < o.max_new_tokens) logits = feed(next);
  }
  const double decode_s = seconds_since(start);
  fmt::print(
      "\n[{}: prefill {} tokens in {:.3f} s ({:.1f} tokens/s); generated {} tokens in "
      "{:.3f} s ({:.1f} tokens/s) on {}]\n",
      model->config().arch, prompt.size(), prefill_s, prompt.size() / prefill_s, generated.size(),
      decode_s, generated.size() / std::max(decode_s, 1e-9), device.str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Sample a continuation of a prompt from a checkpoint");
  auto o = std::make_shared<Options>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--prompt-ids", o->prompt_ids, "prompt as token ids, e.g. \"1 2 3\"");
  cmd->add_option("--prompt", o->prompt, "prompt text (needs --tokenizer)");
  cmd->add_option("--tokenizer", o->tokenizer, "sentencepiece model to encode and decode");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate")
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "softmax temperature; 0 is greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "sample among the k most likely tokens (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "nucleus: the smallest set with this probability")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace dssm::cli
