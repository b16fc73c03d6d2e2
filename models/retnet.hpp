// DenseRetNet (arXiv 2403.00818, Sec. 3.4, Eq. 20-23) and its baseline RetNet (Sun et al. 2023,
// arXiv 2307.08621) in torchscale's layout. Both share multi-scale retention (RetNet Eq. 5-9):
// per head h with decay gamma_h = 1 - 2^(-5-h), rotary on q and k, retention in its parallel,
// chunkwise or recurrent form (ops/retention.hpp), then a per-head RMS norm. docs/models.md maps
// every step to its equation.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "models/config.hpp"
#include "models/language_model.hpp"
#include "nn/dense_hidden_connection.hpp"
#include "nn/dropout.hpp"
#include "nn/embedding.hpp"
#include "nn/linear.hpp"
#include "nn/module_list.hpp"
#include "nn/rms_norm.hpp"
#include "nn/swiglu.hpp"

namespace dssm::models {

// o [B, T, v_dim] = multi-scale retention of q, k [B, T, qk_dim] and v [B, T, v_dim] split into
// `heads` heads, rotary applied to q and k per head (positions 0 .. T-1), in settings.form.
Tensor multi_scale_retention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                             const RetentionSettings& settings);
// The same for one token (T = 1) at `position`: S <- gamma S + k^T v, o = q S (RetNet Eq. 6).
// `state` [B, heads, dk, dv_head] is replaced by the new state.
Tensor multi_scale_retention_step(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                                  Tensor& state, int64_t position);

// The same for a prompt of T tokens at positions position .. position+T-1 that follow `state`
// (S just before the prompt, [B, heads, dk, dv_head]; zero at position 0), computed in
// settings.form; `state` is replaced by S after the prompt's last token, the state T calls of
// multi_scale_retention_step would leave.
Tensor multi_scale_retention_prefill(const Tensor& q, const Tensor& k, const Tensor& v,
                                     int64_t heads, const RetentionSettings& settings,
                                     Tensor& state, int64_t position);

// What step() carries per sequence: one retention state per layer.
struct RetentionState : State {
  std::vector<Tensor> layers;  // [batch, heads, dk, dv_head] each
};

// A retention function of (q, k, v) -> o [B, T, v_dim]: the sequence form or one recurrent step.
using RetentionFn = std::function<Tensor(const Tensor& q, const Tensor& k, const Tensor& v)>;

// ---- DenseRetNet --------------------------------------------------------------------------------

// One GAU-like block (no separate FFN): pre-RMSNorm, q/k/v/g projections with silu, the dense
// KV connection from the previous blocks' pre-fusion k and v, retention, per-head RMS norm, gate,
// out projection, residual.
class DenseRetNetBlock : public nn::Module {
 public:
  DenseRetNetBlock(int64_t layer, const DenseRetNetConfig& config, Generator& init_gen,
                   Generator& dropout_gen);

  struct Output {
    Tensor h;     // the residual stream after this block
    Tensor k, v;  // this block's pre-fusion key and value, for the deeper blocks
  };
  // h [B, T, d]; previous_k/v: the pre-fusion k and v of blocks l-1, l-2, ... (nearest first,
  // dense_inputs() of each).
  Output forward(const Tensor& h, const std::vector<Tensor>& previous_k,
                 const std::vector<Tensor>& previous_v, const RetentionFn& retention) const;

  int64_t dense_inputs() const { return dense_k_->num_previous(); }

 private:
  int64_t heads_;
  int64_t qk_dim_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, to_hidden_, out_proj_;
  std::shared_ptr<nn::DenseHiddenConnection> dense_k_, dense_v_;
  std::shared_ptr<nn::RMSNorm> group_norm_;  // over one head's dv_head channels, shared by heads
  std::shared_ptr<nn::Dropout> dropout_;
};

class DenseRetNet : public LanguageModel {
 public:
  DenseRetNet(const DenseRetNetConfig& config, uint64_t seed);

  Tensor forward(const Tensor& ids) override;
  std::unique_ptr<State> new_state(int64_t batch) const override;
  Tensor step(const Tensor& ids, State& state) override;
  Tensor prefill(const Tensor& ids, State& state) override;
  const DenseRetNetConfig& config() const override { return config_; }

 private:
  // The residual stream after the last block, each block's retention given by retention_of.
  Tensor run(const Tensor& h, const std::function<RetentionFn(size_t layer)>& retention_of);

  DenseRetNetConfig config_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::shared_ptr<nn::ModuleList<DenseRetNetBlock>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;
};

// ---- RetNet -------------------------------------------------------------------------------------

// torchscale's RetNet decoder layer: h += MSR(RMSNorm(h)); h += SwiGLU(RMSNorm(h)).
class RetNetBlock : public nn::Module {
 public:
  RetNetBlock(const RetNetConfig& config, Generator& init_gen, Generator& dropout_gen);

  Tensor forward(const Tensor& h, const RetentionFn& retention) const;

 private:
  int64_t heads_;
  int64_t qk_dim_;
  double norm_eps_;
  std::shared_ptr<nn::RMSNorm> retention_norm_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, v_proj_, g_proj_, out_proj_;
  std::shared_ptr<nn::RMSNorm> ffn_norm_;
  std::shared_ptr<nn::SwiGLU> ffn_;
  std::shared_ptr<nn::Dropout> dropout_;
};

class RetNet : public LanguageModel {
 public:
  RetNet(const RetNetConfig& config, uint64_t seed);

  Tensor forward(const Tensor& ids) override;
  std::unique_ptr<State> new_state(int64_t batch) const override;
  Tensor step(const Tensor& ids, State& state) override;
  Tensor prefill(const Tensor& ids, State& state) override;
  const RetNetConfig& config() const override { return config_; }

 private:
  // The residual stream after the last block, each block's retention given by retention_of.
  Tensor run(const Tensor& h, const std::function<RetentionFn(size_t layer)>& retention_of);

  RetNetConfig config_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::shared_ptr<nn::ModuleList<RetNetBlock>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;
};

}  // namespace dssm::models
