#include "models/retnet.hpp"

#include <cmath>

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/retention.hpp"
#include "ops/retention_common.hpp"
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

// Retention of rotated q, k and v [B, heads, T, d] in the settings' form, rows normalised as
// positions 0 .. T-1 with nothing before them.
Tensor retention_in_form(const Tensor& q, const Tensor& k, const Tensor& v,
                         const RetentionSettings& settings) {
  if (settings.form == "chunkwise") return retention_chunkwise(q, k, v, settings.chunk_size);
  if (settings.form == "recurrent") return retention_recurrent(q, k, v);
  return retention_parallel(q, k, v);
}

// The rows o [B, heads, T, dv] of a prompt computed as if it started at position 0, moved to
// positions p .. p+T-1 after the state S = S_{p-1}: row i gets r_{p+i} instead of r_i, and also
// sees S decayed by gamma^(i+1) (the inter-chunk term of the chunkwise form, RetNet Eq. 7):
//   o_{p+i} = (r_{p+i} / r_i) o_i + r_{p+i} gamma^(i+1) q_i S.
Tensor continue_after_state(const Tensor& o, const Tensor& q, const Tensor& state, int64_t p) {
  const int64_t heads = q.size(1), length = q.size(2);
  const RetentionDecay decay{retention_default_gammas(heads)};
  const auto per_row = [&](const std::function<double(int64_t, int64_t)>& value) {
    return per_head_table(heads, length, value, q.dtype(), q.device()).unsqueeze(-1);
  };
  const Tensor rescale = per_row(
      [&](int64_t h, int64_t i) { return decay.row_scale(h, p + i) / decay.row_scale(h, i); });
  const Tensor carry = per_row([&](int64_t h, int64_t i) {
    return decay.row_scale(h, p + i) * decay.power(h, static_cast<double>(i + 1));
  });
  return o * rescale + matmul(q * carry, state);
}

// RMSNorm then the LM head (untied, Sec. 4.1), at every position of h.
Tensor logits_of(const nn::RMSNorm& norm, const nn::Linear& lm_head, const Tensor& h) {
  return lm_head.forward(norm.forward(h));
}

// h [B, T, d] -> [B, d] at the last position: the only logits step and prefill return.
Tensor last_position(const Tensor& h) {
  return h.select(1, h.size(1) - 1);
}

// A zero state per layer (new_state of both models), on `like`'s dtype and device.
std::unique_ptr<State> zero_retention_state(int64_t batch, int64_t layers, int64_t heads,
                                            int64_t qk_dim, int64_t v_dim, const Tensor& like) {
  DSSM_CHECK(batch > 0, "new_state", "expected a positive batch, got {}", batch);
  auto state = std::make_unique<RetentionState>();
  for (int64_t l = 0; l < layers; ++l) {
    state->layers.push_back(
        Tensor::zeros({batch, heads, qk_dim / heads, v_dim / heads}, like.dtype(), like.device()));
  }
  return state;
}

RetentionState& retention_state_of(State& state, size_t layers, int64_t batch,
                                   std::string_view where) {
  auto* retention = dynamic_cast<RetentionState*>(&state);
  DSSM_CHECK(retention != nullptr && retention->layers.size() == layers, where,
             "expected a state from this model's new_state() ({} layers)", layers);
  DSSM_CHECK(retention->layers[0].size(0) == batch, where,
             "the state holds {} sequences, the ids {}", retention->layers[0].size(0), batch);
  return *retention;
}

using RetentionOfLayer = std::function<RetentionFn(size_t layer)>;

// Every layer's retention for forward: whole sequences in the settings' form.
RetentionOfLayer sequence_retention(int64_t heads, const RetentionSettings& settings) {
  return [heads, &settings](size_t) -> RetentionFn {
    return [heads, &settings](const Tensor& q, const Tensor& k, const Tensor& v) {
      return multi_scale_retention(q, k, v, heads, settings);
    };
  };
}

// Layer l's retention for step: one token at s.position, advancing s.layers[l].
RetentionOfLayer step_retention(int64_t heads, RetentionState& s) {
  return [heads, &s](size_t layer) -> RetentionFn {
    return [heads, &s, layer](const Tensor& q, const Tensor& k, const Tensor& v) {
      return multi_scale_retention_step(q, k, v, heads, s.layers[layer], s.position);
    };
  };
}

// Layer l's retention for prefill: a prompt from s.position on, advancing s.layers[l].
RetentionOfLayer prefill_retention(int64_t heads, const RetentionSettings& settings,
                                   RetentionState& s) {
  return [heads, &settings, &s](size_t layer) -> RetentionFn {
    return [heads, &settings, &s, layer](const Tensor& q, const Tensor& k, const Tensor& v) {
      return multi_scale_retention_prefill(q, k, v, heads, settings, s.layers[layer], s.position);
    };
  };
}

}  // namespace

// RetNet Eq. 5-8 per head, with the rotary of Sec. 2.1 ("xpos" without its scaling).
Tensor multi_scale_retention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                             const RetentionSettings& settings) {
  const Tensor qh = rotary(split_heads(q, heads)), kh = rotary(split_heads(k, heads));
  return merge_heads(retention_in_form(qh, kh, split_heads(v, heads), settings));
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

// The prompt's rows in the parallel or chunkwise form (RetNet Eq. 5 / 7), moved after the
// carried state when the prompt does not start at 0, and the state after the prompt,
// S = gamma^T S_prev + sum_m gamma^(T-1-m) k_m^T v_m (Eq. 6 unrolled).
Tensor multi_scale_retention_prefill(const Tensor& q, const Tensor& k, const Tensor& v,
                                     int64_t heads, const RetentionSettings& settings,
                                     Tensor& state, int64_t position) {
  const Tensor qh = rotary(split_heads(q, heads), position);
  const Tensor kh = rotary(split_heads(k, heads), position);
  const Tensor vh = split_heads(v, heads);
  Tensor o = retention_in_form(qh, kh, vh, settings);
  if (position > 0) o = continue_after_state(o, qh, state, position);
  state = retention_final_state(kh, vh, state);
  return merge_heads(o);
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
  return h;
}

Tensor DenseRetNet::forward(const Tensor& ids) {
  check_token_ids(ids, 2, "DenseRetNet::forward");
  const Tensor h =
      run(embed_tokens_->forward(ids), sequence_retention(config_.n_heads, config_.retention));
  return logits_of(*norm_, *lm_head_, h);
}

std::unique_ptr<State> DenseRetNet::new_state(int64_t batch) const {
  return zero_retention_state(batch, config_.n_layers, config_.n_heads, config_.qk_dim,
                              config_.v_dim, embed_tokens_->weight());
}

Tensor DenseRetNet::step(const Tensor& ids, State& state) {
  check_token_ids(ids, 1, "DenseRetNet::step");
  RetentionState& s = retention_state_of(state, layers_->size(), ids.size(0), "DenseRetNet::step");
  const Tensor h =
      run(embed_tokens_->forward(ids.unsqueeze(1)), step_retention(config_.n_heads, s));
  ++s.position;
  return logits_of(*norm_, *lm_head_, last_position(h));
}

Tensor DenseRetNet::prefill(const Tensor& ids, State& state) {
  check_token_ids(ids, 2, "DenseRetNet::prefill");
  RetentionState& s =
      retention_state_of(state, layers_->size(), ids.size(0), "DenseRetNet::prefill");
  const Tensor h =
      run(embed_tokens_->forward(ids), prefill_retention(config_.n_heads, config_.retention, s));
  s.position += ids.size(1);
  return logits_of(*norm_, *lm_head_, last_position(h));
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

Tensor RetNet::run(const Tensor& h_in, const std::function<RetentionFn(size_t)>& retention_of) {
  Tensor h = h_in;
  for (size_t l = 0; l < layers_->size(); ++l) h = (*layers_)[l].forward(h, retention_of(l));
  return h;
}

Tensor RetNet::forward(const Tensor& ids) {
  check_token_ids(ids, 2, "RetNet::forward");
  const Tensor h =
      run(embed_tokens_->forward(ids), sequence_retention(config_.n_heads, config_.retention));
  return logits_of(*norm_, *lm_head_, h);
}

std::unique_ptr<State> RetNet::new_state(int64_t batch) const {
  return zero_retention_state(batch, config_.n_layers, config_.n_heads, config_.qk_dim,
                              config_.v_dim, embed_tokens_->weight());
}

Tensor RetNet::step(const Tensor& ids, State& state) {
  check_token_ids(ids, 1, "RetNet::step");
  RetentionState& s = retention_state_of(state, layers_->size(), ids.size(0), "RetNet::step");
  const Tensor h =
      run(embed_tokens_->forward(ids.unsqueeze(1)), step_retention(config_.n_heads, s));
  ++s.position;
  return logits_of(*norm_, *lm_head_, last_position(h));
}

Tensor RetNet::prefill(const Tensor& ids, State& state) {
  check_token_ids(ids, 2, "RetNet::prefill");
  RetentionState& s = retention_state_of(state, layers_->size(), ids.size(0), "RetNet::prefill");
  const Tensor h =
      run(embed_tokens_->forward(ids), prefill_retention(config_.n_heads, config_.retention, s));
  s.position += ids.size(1);
  return logits_of(*norm_, *lm_head_, last_position(h));
}

}  // namespace dssm::models
