#include "models/mamba.hpp"

#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "tensor/error.hpp"

namespace dssm::models {

MambaBlock::MambaBlock(const MambaConfig& config, int64_t layer, Generator& gen)
    : norm_(
          register_module("norm", std::make_shared<nn::RMSNorm>(config.d_model, config.norm_eps))),
      mixer_(register_module("mixer", std::make_shared<MambaMixer>(config, layer, gen))) {}

MambaModel::MambaModel(const MambaConfig& config, uint64_t seed)
    : LanguageModel(seed), config_(config) {
  Generator gen(seed);
  embed_tokens_ = register_module(
      "embed_tokens", std::make_shared<nn::Embedding>(config.vocab_size, config.d_model, gen));
  layers_ = register_module("layers", std::make_shared<nn::ModuleList<MambaBlock>>());
  for (int64_t l = 0; l < config.n_layers; ++l) {
    layers_->push_back(std::make_shared<MambaBlock>(config, l, gen));
  }
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(config.d_model, config.norm_eps));
}

Tensor MambaModel::logits(const Tensor& hidden) const {
  return matmul(norm_->forward(hidden), embed_tokens_->weight().transpose(0, 1));
}

Tensor MambaModel::forward(const Tensor& ids) {
  DSSM_CHECK(ids.defined() && ids.dim() == 2, "MambaModel::forward",
             "expected ids [batch, length], got {}", ids.defined() ? describe(ids) : "none");
  return logits(run(ids, nullptr));
}

Tensor MambaModel::run(const Tensor& ids, MambaState* state) {
  Tensor h = embed_tokens_->forward(ids);  // [B, T, d]
  std::vector<DenseSource> recent;         // the sources of the shallower layers, nearest first
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    MambaBlock& b = block(l);
    const std::vector<DenseSource> previous(recent.begin(),
                                            recent.begin() + b.mixer().dense_inputs());
    DenseSource own;
    MixerState* final_state = state ? &state->layers[static_cast<size_t>(l)] : nullptr;
    h = h + b.mixer().forward(b.norm().forward(h), previous, own, final_state);
    if (config_.dense) {
      recent.insert(recent.begin(), std::move(own));
      if (static_cast<int64_t>(recent.size()) > config_.dense_options.m) recent.pop_back();
    }
  }
  return h;
}

std::unique_ptr<State> MambaModel::new_state(int64_t batch) const {
  DSSM_CHECK(batch > 0, "MambaModel::new_state", "expected a positive batch, got {}", batch);
  auto state = std::make_unique<MambaState>();
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    state->layers.push_back((*layers_)[static_cast<size_t>(l)].mixer().new_state(batch));
  }
  return state;
}

MambaState& MambaModel::state_of(State& state, const char* where) const {
  auto* s = dynamic_cast<MambaState*>(&state);
  DSSM_CHECK(s != nullptr && static_cast<int64_t>(s->layers.size()) == config_.n_layers, where,
             "expected a state made by this model's new_state ({} layers)", config_.n_layers);
  return *s;
}

Tensor MambaModel::prefill(const Tensor& ids, State& state) {
  const char* op = "MambaModel::prefill";
  check_token_ids(ids, 2, op);
  MambaState& s = state_of(state, op);
  const int64_t batch = s.layers.front().ssm.size(0);
  DSSM_CHECK(ids.size(0) == batch, op, "expected ids [{}, length] (the state's batch), got {}",
             batch, describe(ids));
  DSSM_CHECK(
      s.position == 0, op,
      "the parallel scan starts from a zero state, so a prompt is prefilled only into a fresh "
      "state (position 0); this one is at {}: feed the tokens through step instead",
      s.position);
  const Tensor h = run(ids, &s);
  s.position += ids.size(1);
  return logits(h.select(1, h.size(1) - 1));
}

Tensor MambaModel::step(const Tensor& ids, State& state) {
  const char* op = "MambaModel::step";
  MambaState& s = state_of(state, op);
  const int64_t batch = s.layers.front().ssm.size(0);
  DSSM_CHECK(ids.defined() && ids.dim() == 1 && ids.size(0) == batch, op,
             "expected ids [{}] (the state's batch), got {}", batch,
             ids.defined() ? describe(ids) : "none");
  Tensor h = embed_tokens_->forward(ids);  // [B, d]
  std::vector<DenseStepSource> recent;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    MambaBlock& b = block(l);
    const std::vector<DenseStepSource> previous(recent.begin(),
                                                recent.begin() + b.mixer().dense_inputs());
    DenseStepSource own;
    h = h + b.mixer().step(b.norm().forward(h), s.layers[static_cast<size_t>(l)], previous, own);
    if (config_.dense) {
      recent.insert(recent.begin(), std::move(own));
      if (static_cast<int64_t>(recent.size()) > config_.dense_options.m) recent.pop_back();
    }
  }
  ++s.position;
  return logits(h);
}

}  // namespace dssm::models
