// The dense hidden connection of DenseSSM (arXiv 2403.00818, Sec. 3.1-3.2): layer l fuses the
// hidden states of its m shallower layers into its own.
//
//   selective transition (Eq. 11-12)   phi_i(h^{l-i}) = Proj_i(h^{l-i}) ⊙ silu(Select_i(x^l))
//   hidden fusion        (Eq. 13)      h'^l = Fuse(h^l, phi_1(h^{l-1}), ..., phi_m(h^{l-m}))
//     Add:     h'^l = h^l + sum_i phi_i(h^{l-i})
//     Concat:  h'^l = W_fuse [h^l; phi_1(h^{l-1}); ...; phi_m(h^{l-m})]
//   optional   h'^l <- RMSNorm(h'^l)   (DenseRetNet's RMSNorm_k and RMSNorm_v, Eq. 20-23 as the
//                                       reference code applies them)
//
// In DenseRetNet h is the key or the value (Eq. 20-23), in DenseMamba the SSM hidden state or its
// read-out (Eq. 15-17); x^l is the block's (normed) input, from which the gate is computed. Every
// ablation knob of the paper (Tables 5, 7-9) is an option:
//   projection  none (no dense term at all) | identity (Proj = I) | linear (Proj = W, bias-free)
//   select      none (gate = 1) | mlp (GateMLP in -> gate_hidden -> silu -> width) | linear (W x)
//   fusion      add | concat
//   m           how many shallower layers are fused (layer l fuses min(m, l) of them)
//   shared      one (Proj, Select) pair for all m predecessors, or one pair per predecessor
//   every       only layers l with l % every == 0 are dense; the others pass h through
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/gate_mlp.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"
#include "nn/module_list.hpp"
#include "nn/rms_norm.hpp"

namespace dssm::nn {

enum class DenseProjection { none, identity, linear };
enum class DenseSelect { none, mlp, linear };
enum class DenseFusion { add, concat };

struct DenseConnectionOptions {
  DenseProjection projection = DenseProjection::identity;
  DenseSelect select = DenseSelect::mlp;
  DenseFusion fusion = DenseFusion::add;
  int64_t m = 2;
  bool shared = true;
  int64_t every = 1;
  int64_t gate_hidden = 0;  // the MLP's hidden width; 0: input_dim / 32 (at least 1)
  bool norm = false;        // RMSNorm over the width after fusion
  double norm_eps = 1e-6;
};

// How many shallower layers layer `layer` (0-based) fuses under `options`: min(m, layer) on
// dense layers, 0 on the others (and for projection none).
int64_t dense_inputs_of_layer(int64_t layer, const DenseConnectionOptions& options);

// Names of the knobs' values, as written in configs: "none", "identity", "linear", "mlp", ...
std::string to_string(DenseProjection projection);
std::string to_string(DenseSelect select);
std::string to_string(DenseFusion fusion);

class DenseHiddenConnection : public Module {
 public:
  // input_dim: the width of x (the gate's input); width: the width of h. Gate weights get the
  // reference's xavier-uniform init with gain 2^-2.5; Proj and W_fuse N(0, 0.02).
  DenseHiddenConnection(int64_t layer, int64_t input_dim, int64_t width,
                        const DenseConnectionOptions& options, Generator& gen);

  // hidden [..., width], x [..., input_dim], previous = {h^{l-1}, h^{l-2}, ...} (nearest first,
  // exactly num_previous() of them, each shaped like hidden). Returns h'^l [..., width]; on a
  // layer that is not dense, returns `hidden` itself. With FeatureDim::channels the features
  // are along dim 1 instead: hidden [batch, width, length], x [batch, input_dim, length] (the
  // Mamba mixer's channel-major layout; not with the norm, which normalises the last dim).
  enum class FeatureDim { last, channels };
  Tensor forward(const Tensor& hidden, const Tensor& x, const std::vector<Tensor>& previous,
                 FeatureDim features = FeatureDim::last) const;

  int64_t num_previous() const { return num_previous_; }
  bool active() const { return num_previous_ > 0; }

  // True on a dense layer whose Eq. 13 is hidden + g ⊙ sum_i h^{l-i}: the Identity projection,
  // one gate for all predecessors (or none), fusion by addition, no norm. A caller may then fuse
  // that sum into its own kernel (DenseMamba's ops/dense_output.hpp) with g = shared_gate(x).
  bool sums_under_one_gate() const;
  // silu(Select(x)), the gate shared by all predecessors; undefined for select none (g = 1).
  Tensor shared_gate(const Tensor& x, FeatureDim features) const;

 private:
  // silu(Select_i(x)), undefined for select none.
  Tensor gate(size_t i, const Tensor& x, FeatureDim features) const;

  DenseConnectionOptions options_;
  int64_t input_dim_;
  int64_t width_;
  int64_t num_previous_;
  std::shared_ptr<ModuleList<Linear>> projections_;
  std::shared_ptr<ModuleList<GateMLP>> mlp_gates_;
  std::shared_ptr<ModuleList<Linear>> linear_gates_;
  std::shared_ptr<Linear> fuse_;
  std::shared_ptr<RMSNorm> norm_;
};

}  // namespace dssm::nn
