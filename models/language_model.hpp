// LanguageModel: the interface every model of densessm implements (DenseRetNet, RetNet, LLaMA in
// models/retnet.hpp and models/llama.hpp; Mamba and DenseMamba in models/mamba.hpp), so that
// the trainer, the evaluator and the generator never need to know which model they drive.
//
// Two ways to run a model, computing the same function:
//   forward(ids [B, T])        -> logits [B, T, V]   the parallel (training) form
//   step(ids [B], state)       -> logits [B, V]      one token, carrying `state` (KV cache,
//                                                     retention states, SSM states) forward
//   prefill(ids [B, T], state) -> logits [B, V]      a whole prompt through the parallel form,
//                                                     leaving `state` as T steps would
// Feeding tokens 0..T-1 one by one through step gives the rows of forward's logits.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "models/config.hpp"
#include "nn/module.hpp"
#include "tensor/error.hpp"
#include "tensor/random.hpp"
#include "tensor/tensor.hpp"

namespace dssm::models {

// What a model carries from one generated token to the next. Each model derives its own state
// (per-layer caches) from this; `position` counts the tokens consumed so far.
struct State {
  virtual ~State() = default;
  int64_t position = 0;
};

class LanguageModel : public nn::Module {
 public:
  // ids: [batch, length] of i32 or i64, every id in [0, vocab_size). Returns logits [batch,
  // length, vocab_size] in the parameters' dtype.
  virtual Tensor forward(const Tensor& ids) = 0;

  // A fresh state (position 0) for `batch` sequences, on the parameters' device and dtype.
  virtual std::unique_ptr<State> new_state(int64_t batch) const = 0;

  // ids: [batch], the token at position state.position of each sequence. Returns logits
  // [batch, vocab_size] and advances the state by one token. Run it under NoGradGuard.
  virtual Tensor step(const Tensor& ids, State& state) = 0;

  // ids: [batch, length], the tokens at positions state.position .. state.position + length - 1.
  // Returns the logits [batch, vocab_size] of the last one and advances the state by `length`
  // tokens: the state and all later step() logits equal those of `length` calls of step, but the
  // prompt runs through the parallel (training) form in one pass. The retention models and LLaMA
  // continue any state; Mamba and DenseMamba take only a fresh one (position 0: their scan starts
  // from a zero state) and throw otherwise. Run it under NoGradGuard.
  virtual Tensor prefill(const Tensor& ids, State& state) = 0;

  // The configuration the model was built from; config().to_json() rebuilds it via make_model.
  virtual const ModelConfig& config() const = 0;

  // Dropout masks are drawn from this generator, so a training run is reproducible; checkpoints
  // save and restore its (seed, offset). Weights are initialised from Generator(seed), dropout
  // from Generator(dropout_seed(seed)): two streams that never overlap.
  Generator& dropout_generator() { return dropout_generator_; }
  static uint64_t dropout_seed(uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ull; }

 protected:
  explicit LanguageModel(uint64_t seed) : dropout_generator_(dropout_seed(seed)) {}

 private:
  Generator dropout_generator_;
};

// Checks the token ids handed to forward (dims 2: [batch, length]) or step (dims 1: [batch]):
// integer dtype and shape. Ids outside [0, vocab) are reported by the embedding lookup.
inline void check_token_ids(const Tensor& ids, int64_t dims, std::string_view where) {
  DSSM_CHECK(ids.defined() && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32), where,
             "expected token ids of dtype i64 or i32, got {}",
             ids.defined() ? describe(ids) : "none");
  DSSM_CHECK(ids.dim() == dims && ids.numel() > 0, where, "expected token ids {}, got {}",
             dims == 2 ? "[batch, length]" : "[batch]", describe(ids));
}

// Builds the model named by config["arch"] with weights initialised from `seed`.
// Arches: "densretnet", "retnet", "llama" (models/retnet.cpp, models/llama.cpp) and "mamba",
// "densemamba" (models/mamba.cpp). Each arch is one line of the table in models/registry.cpp:
// add a model there. An unknown arch or a bad config throws dssm::Error listing every problem.
std::unique_ptr<LanguageModel> make_model(const nlohmann::json& config, uint64_t seed);

}  // namespace dssm::models
