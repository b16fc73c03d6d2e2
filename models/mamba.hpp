// Mamba (Gu & Dao 2023) and DenseMamba (arXiv 2403.00818, Sec. 3.3) language models:
//
//   h^0     = Embedding(ids)
//   h^{l+1} = h^l + MambaMixer_l(RMSNorm_l(h^l))        (pre-norm residual blocks)
//   logits  = RMSNorm_f(h^L) E^T                          (LM head tied to the embedding E)
//
// DenseMamba's mixers fuse the SSM states (or inputs) of their m shallower layers
// (models/mamba_mixer.hpp). Recurrent mode carries, per layer, the conv inputs and the SSM
// state: O(1) memory per token; the dense connection reads the states the step already holds.
// Parameter names: embed_tokens.weight, layers.<l>.norm.weight, layers.<l>.mixer.<...>,
// norm.weight (docs/checkpoints.md lists them with their shapes).
#pragma once

#include <memory>
#include <vector>

#include "models/language_model.hpp"
#include "models/mamba_config.hpp"
#include "models/mamba_mixer.hpp"
#include "nn/embedding.hpp"
#include "nn/module_list.hpp"
#include "nn/rms_norm.hpp"

namespace dssm::models {

// A pre-norm residual block: h + mixer(norm(h)).
class MambaBlock : public nn::Module {
 public:
  MambaBlock(const MambaConfig& config, int64_t layer, Generator& gen);
  nn::RMSNorm& norm() { return *norm_; }
  MambaMixer& mixer() { return *mixer_; }

 private:
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<MambaMixer> mixer_;
};

struct MambaState : State {
  std::vector<MixerState> layers;
};

class MambaModel : public LanguageModel {
 public:
  MambaModel(const MambaConfig& config, uint64_t seed);

  Tensor forward(const Tensor& ids) override;
  std::unique_ptr<State> new_state(int64_t batch) const override;
  Tensor step(const Tensor& ids, State& state) override;
  // A fresh state only (position 0): the parallel scan starts from a zero state.
  Tensor prefill(const Tensor& ids, State& state) override;
  const ModelConfig& config() const override { return config_; }

  const MambaConfig& mamba_config() const { return config_; }
  MambaBlock& block(int64_t layer) { return (*layers_)[static_cast<size_t>(layer)]; }

 private:
  Tensor logits(const Tensor& hidden) const;  // final norm, tied LM head
  // The residual stream after the last layer, h [B, T, d]; with `state`, every layer's final
  // recurrent state is written to it (MambaMixer::forward).
  Tensor run(const Tensor& ids, MambaState* state);
  MambaState& state_of(State& state, const char* where) const;  // checks it is this model's

  MambaConfig config_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::shared_ptr<nn::ModuleList<MambaBlock>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
};

}  // namespace dssm::models
