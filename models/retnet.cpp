#include "models/retnet.hpp"

#include <cmath>

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/norm.hpp"
#include "ops/retention.hpp"
#include "ops/rotary.hpp"
#include "ops/shape.hpp"
#include "tensor/error.hpp"

namespace dssm::models {
namespace {

// [B, T, heads * d] -> [B, heads, T, d]
Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).permute({0, 2, 1, 3});
}
// [B, heads, T, d] -> [B, T, heads * d]
Tensor merge_heads(const Tensor& x) {
  return x.permute({0, 2, 1, 3}).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// The recurrent form over a whole sequence: one retention step per token, outputs stacked.
Tensor retention_recurrent(const Tensor& q, const Tensor& k, const Tensor& v) {
  Tensor state = Tensor::zeros({q.size(0), q.size(1), q.size(3), v.size(3)}, q.dtype(), q.device());
  std::vector<Tensor> outputs;
  for (int64_t t = 0; t < q.size(2); ++t) {
    RetentionStepResult r =
        retention_step(q.select(2, t), k.select(2, t), v.select(2, t), state, t);
    outputs.push_back(r.out);
    state = r.state;
  }
  return stack(outputs, 2);
}

// Output n of the lm head for every position: RMSNorm then the LM head (untied, Sec. 4.1).
Tensor logits_of(const nn::RMSNorm& norm, const nn::Linear& lm_head, const Tensor& h) {
  return lm_head.forward(norm.forward(h));
}

RetentionState& retention_state_of(State& state, size_t layers, int64_t batch,
                                   std::string_view where) {
  auto* retention = dynamic_cast<RetentionState*>(&state);
  check(retention != nullptr && retention->layers.size() == layers, where,
        "expected a state from this model's new_state() ({} layers)", layers);
  check(retention->layers[0].size(0) == batch, where, "the state holds {} sequences, the ids {}",
        retention->layers[0].size(0), batch);
  return *retention;
}

}  // namespace

// RetNet Eq. 5-8 per head, with the rotary of Sec. 2.1 ("xpos" without its scaling).
Tensor multi_scale_retention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                             const RetentionSettings& settings) {
  const Tensor qh = rotary(split_heads(q, heads)), kh = rotary(split_heads(k, heads));
  const Tensor vh = split_heads(v, heads);
  if (settings.form == "chunkwise") {
    return merge_heads(retention_chunkwise(qh, kh, vh, settings.chunk_size));
  }
  if (settings.form == "recurrent") return merge_heads(retention_recurrent(qh, kh, vh));
  return merge_heads(retention_parallel(qh, kh, vh));
}

Tensor multi_scale_retention_step(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                                  Tensor& state, int64_t position) {
  const Tensor qh = rotary(split_heads(q, heads), position).select(2, 0);
  const Tensor kh = rotary(split_heads(k, heads), position).select(2, 0);
  RetentionStepResult r =
      retention_step(qh, kh, split_heads(v, heads).select(2, 0), state, position);
  state = r.state;
  return merge_heads(r.out.unsqueeze(2));
}

// ---- DenseRetNet --------------------------------------------------------------------------------

DenseRetNetBlock::DenseRetNetBlock(int64_t layer, const DenseRetNetConfig& c, Generator& gen,
                                   Generator& dropout_gen)
    : heads_(c.n_heads), qk_dim_(c.qk_dim) {
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  q_proj_ =
      register_module("q_proj", std::make_shared<nn::Linear>(c.d_model, c.qk_dim, false, gen));
  k_proj_ =
      register_module("k_proj", std::make_shared<nn::Linear>(c.d_model, c.qk_dim, false, gen));
  to_hidden_ = register_module("to_hidden",
                               std::make_shared<nn::Linear>(c.d_model, 2 * c.v_dim, false, gen));
  out_proj_ =
      register_module("out_proj", std::make_shared<nn::Linear>(c.v_dim, c.d_model, false, gen));
  dense_k_ = register_module("dense_k", std::make_shared<nn::DenseHiddenConnection>(
                                            layer, c.d_model, c.qk_dim, c.dense, gen));
  dense_v_ = register_module("dense_v", std::make_shared<nn::DenseHiddenConnection>(
                                            layer, c.d_model, c.v_dim, c.dense, gen));
  group_norm_ =
      register_module("group_norm", std::make_shared<nn::RMSNorm>(c.v_dim / c.n_heads, c.norm_eps));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout, dropout_gen));
  // The reference init (models.md): xavier-uniform, gain 2^-2.5 in, 2^-1 out.
  const double in_gain = std::pow(2.0, -2.5);
  nn::init::xavier_uniform(q_proj_->weight(), in_gain, gen);
  nn::init::xavier_uniform(k_proj_->weight(), in_gain, gen);
  nn::init::xavier_uniform(to_hidden_->weight(), in_gain, gen);
  nn::init::xavier_uniform(out_proj_->weight(), 0.5, gen);
}

DenseRetNetBlock::Output DenseRetNetBlock::forward(const Tensor& h,
                                                   const std::vector<Tensor>& previous_k,
                                                   const std::vector<Tensor>& previous_v,
                                                   const RetentionFn& retention) const {
  const Tensor x = norm_->forward(h);
  // q = silu(x W_q), k = silu(x W_k) / sqrt(d_k), [v, g] = silu(x W_h)   (Eq. 20)
  const Tensor q = silu(q_proj_->forward(x));
  const Tensor k = silu(k_proj_->forward(x)) * (1.0 / std::sqrt(double(qk_dim_ / heads_)));
  const std::vector<Tensor> v_and_g = chunk(silu(to_hidden_->forward(x)), 2, -1);
  const Tensor& v = v_and_g[0];
  const Tensor& g = v_and_g[1];
  // k' = RMSNorm_k(k + sum_i silu(MLP_k(x)) ⊙ k^{l-i}), likewise v'   (Eq. 21-22)
  const Tensor k_fused = dense_k_->forward(k, x, previous_k);
  const Tensor v_fused = dense_v_->forward(v, x, previous_v);
  // o = GroupNorm(Retention(q, k', v')) ⊙ g,  h + o W_o   (Eq. 23)
  const Tensor o = retention(q, k_fused, v_fused);
  const Shape per_head = {o.size(0), o.size(1), heads_, o.size(2) / heads_};
  const Tensor normed = group_norm_->forward(o.view(per_head)).view(o.shape());
  return {h + dropout_->forward(out_proj_->forward(normed * g)), k, v};
}

DenseRetNet::DenseRetNet(const DenseRetNetConfig& config, uint64_t seed)
    : LanguageModel(seed), config_(config) {
  Generator gen(seed);
  const auto& c = config_;
  embed_tokens_ = register_module(
      "embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, gen, c.init_std));
  layers_ = register_module("layers", std::make_shared<nn::ModuleList<DenseRetNetBlock>>());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layers_->push_back(std::make_shared<DenseRetNetBlock>(l, c, gen, dropout_generator()));
  }
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  lm_head_ = register_module(
      "lm_head", std::make_shared<nn::Linear>(c.d_model, c.vocab_size, false, gen, c.init_std));
}

// Runs the blocks, each handed the pre-fusion k and v of its dense_inputs() nearest predecessors.
Tensor DenseRetNet::run(const Tensor& h_in,
                        const std::function<RetentionFn(size_t)>& retention_of) {
  Tensor h = h_in;
  std::vector<Tensor> keys, values;  // pre-fusion k, v of blocks l-1, l-2, ... (nearest first)
  for (size_t l = 0; l < layers_->size(); ++l) {
    const DenseRetNetBlock& block = (*layers_)[l];
    const auto n = static_cast<size_t>(block.dense_inputs());
    const std::vector<Tensor> previous_k(keys.begin(), keys.begin() + n);
    const std::vector<Tensor> previous_v(values.begin(), values.begin() + n);
    DenseRetNetBlock::Output out = block.forward(h, previous_k, previous_v, retention_of(l));
    h = out.h;
    keys.insert(keys.begin(), out.k);
    values.insert(values.begin(), out.v);
    if (static_cast<int64_t>(keys.size()) > config_.dense.m) keys.pop_back(), values.pop_back();
  }
  return logits_of(*norm_, *lm_head_, h);
}

Tensor DenseRetNet::forward(const Tensor& ids) {
  check_token_ids(ids, 2, "DenseRetNet::forward");
  const RetentionFn retention = [this](const Tensor& q, const Tensor& k, const Tensor& v) {
    return multi_scale_retention(q, k, v, config_.n_heads, config_.retention);
  };
  return run(embed_tokens_->forward(ids), [&](size_t) { return retention; });
}

std::unique_ptr<State> DenseRetNet::new_state(int64_t batch) const {
  auto state = std::make_unique<RetentionState>();
  const Tensor& w = embed_tokens_->weight();
  const int64_t dk = config_.qk_dim / config_.n_heads, dv = config_.v_dim / config_.n_heads;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    state->layers.push_back(Tensor::zeros({batch, config_.n_heads, dk, dv}, w.dtype(), w.device()));
  }
  return state;
}

Tensor DenseRetNet::step(const Tensor& ids, State& state) {
  check_token_ids(ids, 1, "DenseRetNet::step");
  RetentionState& s = retention_state_of(state, layers_->size(), ids.size(0), "DenseRetNet::step");
  const int64_t position = s.position;
  const Tensor logits =
      run(embed_tokens_->forward(ids.unsqueeze(1)), [&](size_t layer) -> RetentionFn {
        return [&, layer](const Tensor& q, const Tensor& k, const Tensor& v) {
          return multi_scale_retention_step(q, k, v, config_.n_heads, s.layers[layer], position);
        };
      });
  ++s.position;
  return logits.select(1, 0);
}

// ---- RetNet -------------------------------------------------------------------------------------

RetNetBlock::RetNetBlock(const RetNetConfig& c, Generator& gen, Generator& dropout_gen)
    : heads_(c.n_heads), qk_dim_(c.qk_dim), norm_eps_(c.norm_eps) {
  retention_norm_ =
      register_module("retention_norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  q_proj_ =
      register_module("q_proj", std::make_shared<nn::Linear>(c.d_model, c.qk_dim, false, gen));
  k_proj_ =
      register_module("k_proj", std::make_shared<nn::Linear>(c.d_model, c.qk_dim, false, gen));
  v_proj_ = register_module("v_proj", std::make_shared<nn::Linear>(c.d_model, c.v_dim, false, gen));
  g_proj_ = register_module("g_proj", std::make_shared<nn::Linear>(c.d_model, c.v_dim, false, gen));
  out_proj_ =
      register_module("out_proj", std::make_shared<nn::Linear>(c.v_dim, c.d_model, false, gen));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  ffn_ =
      register_module("ffn", std::make_shared<nn::SwiGLU>(c.d_model, c.ffn_dim, gen, c.init_std));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout, dropout_gen));
  // torchscale's MultiScaleRetention.reset_parameters.
  const double in_gain = std::pow(2.0, -2.5);
  for (const auto& proj : {q_proj_, k_proj_, v_proj_, g_proj_}) {
    nn::init::xavier_uniform(proj->weight(), in_gain, gen);
  }
  nn::init::xavier_uniform(out_proj_->weight(), 0.5, gen);
}

Tensor RetNetBlock::forward(const Tensor& h, const RetentionFn& retention) const {
  // MSR(X) = (swish(X W_G) ⊙ GroupNorm(Retention(X))) W_O   (RetNet Eq. 8)
  const Tensor x = retention_norm_->forward(h);
  const Tensor q = q_proj_->forward(x);
  const Tensor k = k_proj_->forward(x) * (1.0 / std::sqrt(double(qk_dim_ / heads_)));
  const Tensor o = group_rms_norm(retention(q, k, v_proj_->forward(x)), heads_, norm_eps_);
  const Tensor after_retention =
      h + dropout_->forward(out_proj_->forward(silu(g_proj_->forward(x)) * o));
  // Y = MSR(LN(X)) + X,  X' = FFN(LN(Y)) + Y   (RetNet Eq. 9)
  return after_retention + dropout_->forward(ffn_->forward(ffn_norm_->forward(after_retention)));
}

RetNet::RetNet(const RetNetConfig& config, uint64_t seed) : LanguageModel(seed), config_(config) {
  Generator gen(seed);
  const auto& c = config_;
  embed_tokens_ = register_module(
      "embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, gen, c.init_std));
  layers_ = register_module("layers", std::make_shared<nn::ModuleList<RetNetBlock>>());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layers_->push_back(std::make_shared<RetNetBlock>(c, gen, dropout_generator()));
  }
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.d_model, c.norm_eps));
  lm_head_ = register_module(
      "lm_head", std::make_shared<nn::Linear>(c.d_model, c.vocab_size, false, gen, c.init_std));
}

Tensor RetNet::forward(const Tensor& ids) {
  check_token_ids(ids, 2, "RetNet::forward");
  const RetentionFn retention = [this](const Tensor& q, const Tensor& k, const Tensor& v) {
    return multi_scale_retention(q, k, v, config_.n_heads, config_.retention);
  };
  Tensor h = embed_tokens_->forward(ids);
  for (size_t l = 0; l < layers_->size(); ++l) h = (*layers_)[l].forward(h, retention);
  return logits_of(*norm_, *lm_head_, h);
}

std::unique_ptr<State> RetNet::new_state(int64_t batch) const {
  auto state = std::make_unique<RetentionState>();
  const Tensor& w = embed_tokens_->weight();
  const int64_t dk = config_.qk_dim / config_.n_heads, dv = config_.v_dim / config_.n_heads;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    state->layers.push_back(Tensor::zeros({batch, config_.n_heads, dk, dv}, w.dtype(), w.device()));
  }
  return state;
}

Tensor RetNet::step(const Tensor& ids, State& state) {
  check_token_ids(ids, 1, "RetNet::step");
  RetentionState& s = retention_state_of(state, layers_->size(), ids.size(0), "RetNet::step");
  Tensor h = embed_tokens_->forward(ids.unsqueeze(1));
  for (size_t l = 0; l < layers_->size(); ++l) {
    h = (*layers_)[l].forward(h, [&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return multi_scale_retention_step(q, k, v, config_.n_heads, s.layers[l], s.position);
    });
  }
  ++s.position;
  return logits_of(*norm_, *lm_head_, h).select(1, 0);
}

}  // namespace dssm::models
