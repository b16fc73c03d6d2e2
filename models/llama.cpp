#include "models/llama.hpp"

#include "ops/attention.hpp"
#include "ops/elementwise.hpp"
#include "ops/rotary.hpp"
#include "ops/shape.hpp"
#include "tensor/error.hpp"

namespace dssm::models {
namespace {

// [B, T, heads * d] -> [B, heads, T, d]
Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).permute({0, 2, 1, 3});
}

}  // namespace

LlamaBlock::LlamaBlock(const LlamaConfig& c, Generator& gen, Generator& dropout_gen)
    : heads_(c.n_heads), rotary_{.spacing = RotarySpacing::llama, .base = c.rope_theta} {
  const auto linear = [&](int64_t in, int64_t out) {
    return std::make_shared<nn::Linear>(in, out, false, gen, c.init_std);
  };
  attention_norm_ =
      register_module("attention_norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  q_proj_ = register_module("q_proj", linear(c.d_model, c.d_model));
  k_proj_ = register_module("k_proj", linear(c.d_model, c.d_model));
  v_proj_ = register_module("v_proj", linear(c.d_model, c.d_model));
  o_proj_ = register_module("o_proj", linear(c.d_model, c.d_model));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  ffn_ =
      register_module("ffn", std::make_shared<nn::SwiGLU>(c.d_model, c.ffn_dim, gen, c.init_std));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout, dropout_gen));
}

Tensor LlamaBlock::forward(const Tensor& h, Tensor* cached_keys, Tensor* cached_values) const {
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t offset = cached_keys && cached_keys->defined() ? cached_keys->size(2) : 0;
  const Tensor x = attention_norm_->forward(h);
  const Tensor q = rotary(split_heads(q_proj_->forward(x), heads_), offset, rotary_);
  Tensor k = rotary(split_heads(k_proj_->forward(x), heads_), offset, rotary_);
  Tensor v = split_heads(v_proj_->forward(x), heads_);
  if (cached_keys) {
    if (offset > 0) k = concat({*cached_keys, k}, 2), v = concat({*cached_values, v}, 2);
    *cached_keys = k.contiguous(), *cached_values = v.contiguous();
  }
  const Tensor o =
      causal_attention(q, k, v, offset).permute({0, 2, 1, 3}).reshape({B, T, h.size(2)});
  const Tensor after_attention = h + dropout_->forward(o_proj_->forward(o));
  return after_attention + dropout_->forward(ffn_->forward(ffn_norm_->forward(after_attention)));
}

Llama::Llama(const LlamaConfig& config, uint64_t seed) : LanguageModel(seed), config_(config) {
  Generator gen(seed);
  const auto& c = config_;
  embed_tokens_ = register_module(
      "embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, gen, c.init_std));
  layers_ = register_module("layers", std::make_shared<nn::ModuleList<LlamaBlock>>());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layers_->push_back(std::make_shared<LlamaBlock>(c, gen, dropout_generator()));
  }
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  lm_head_ = register_module(
      "lm_head", std::make_shared<nn::Linear>(c.d_model, c.vocab_size, false, gen, c.init_std));
}

Tensor Llama::forward(const Tensor& ids) {
  check_token_ids(ids, 2, "Llama::forward");
  Tensor h = embed_tokens_->forward(ids);
  for (size_t l = 0; l < layers_->size(); ++l) h = (*layers_)[l].forward(h);
  return lm_head_->forward(norm_->forward(h));
}

std::unique_ptr<State> Llama::new_state(int64_t batch) const {
  auto state = std::make_unique<KVCacheState>();
  state->batch = batch;
  state->keys.resize(config_.n_layers);  // empty until the first token
  state->values.resize(config_.n_layers);
  return state;
}

// One token is a prompt of length 1: step and prefill run the same cached attention.
Tensor Llama::step(const Tensor& ids, State& state) {
  check_token_ids(ids, 1, "Llama::step");
  return extend(ids.unsqueeze(1), state, "Llama::step");
}

Tensor Llama::prefill(const Tensor& ids, State& state) {
  check_token_ids(ids, 2, "Llama::prefill");
  return extend(ids, state, "Llama::prefill");
}

Tensor Llama::extend(const Tensor& ids, State& state, const char* where) {
  auto* cache = dynamic_cast<KVCacheState*>(&state);
  DSSM_CHECK(cache != nullptr && cache->keys.size() == layers_->size(), where,
             "expected a state from this model's new_state() ({} layers)", layers_->size());
  DSSM_CHECK(cache->batch == ids.size(0), where, "the cache holds {} sequences, the ids {}",
             cache->batch, ids.size(0));
  Tensor h = embed_tokens_->forward(ids);
  for (size_t l = 0; l < layers_->size(); ++l) {
    h = (*layers_)[l].forward(h, &cache->keys[l], &cache->values[l]);
  }
  cache->position += ids.size(1);
  return lm_head_->forward(norm_->forward(h.select(1, h.size(1) - 1)));
}

}  // namespace dssm::models
