// LLaMA (Touvron et al. 2023, arXiv 2302.13971), the Transformer baseline of the paper (Table 1):
// pre-RMSNorm blocks of causal softmax attention with rotary positions and a SwiGLU FFN.
// Rotary uses the same op as RetNet (adjacent channel pairs, ops/rotary.hpp) with LLaMA's angles
// rope_theta^(-2i/d_head); attention is softmax(q k^T / sqrt(d_head) + causal mask) v
// (ops/attention.hpp: cuDNN's fused flash attention on CUDA bf16, the composite elsewhere), with
// a KV cache for step() and prefill().
#pragma once

#include <memory>
#include <vector>

#include "models/config.hpp"
#include "models/language_model.hpp"
#include "nn/dropout.hpp"
#include "nn/embedding.hpp"
#include "nn/linear.hpp"
#include "nn/module_list.hpp"
#include "nn/rms_norm.hpp"
#include "nn/swiglu.hpp"
#include "ops/rotary.hpp"

namespace dssm::models {

// The KV cache: per layer the rotated keys and the values of every token seen so far.
struct KVCacheState : State {
  int64_t batch = 0;
  std::vector<Tensor> keys;    // [batch, heads, position, d_head] per layer
  std::vector<Tensor> values;  // [batch, heads, position, d_head] per layer
};

class LlamaBlock : public nn::Module {
 public:
  LlamaBlock(const LlamaConfig& config, Generator& init_gen, Generator& dropout_gen);

  // h [B, T, d]. Without a cache: causal attention over the T tokens. With one: the T tokens
  // follow the cached ones (positions cache_len .. cache_len+T-1) and are appended to the cache.
  Tensor forward(const Tensor& h, Tensor* cached_keys = nullptr,
                 Tensor* cached_values = nullptr) const;

 private:
  int64_t heads_;
  RotaryFrequencies rotary_;
  std::shared_ptr<nn::RMSNorm> attention_norm_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<nn::RMSNorm> ffn_norm_;
  std::shared_ptr<nn::SwiGLU> ffn_;
  std::shared_ptr<nn::Dropout> dropout_;
};

class Llama : public LanguageModel {
 public:
  Llama(const LlamaConfig& config, uint64_t seed);

  Tensor forward(const Tensor& ids) override;
  std::unique_ptr<State> new_state(int64_t batch) const override;
  Tensor step(const Tensor& ids, State& state) override;
  Tensor prefill(const Tensor& ids, State& state) override;
  const LlamaConfig& config() const override { return config_; }

 private:
  // ids [B, T] after the cached tokens: appended to the cache; the last one's logits [B, V].
  Tensor extend(const Tensor& ids, State& state, const char* where);

  LlamaConfig config_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::shared_ptr<nn::ModuleList<LlamaBlock>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;
};

}  // namespace dssm::models
