// The Mamba block's mixer (Gu & Dao 2023, Fig. 3; mamba_ssm's Mamba module) and DenseMamba's
// dense hidden connection on its SSM state (arXiv 2403.00818, Sec. 3.3, Eq. 15-17).
//
//   [x, z] = in_proj(u_in)                       d -> 2 di
//   x      = silu(causal_conv1d(x))              depthwise, width d_conv, with bias
//   [dt, B, C] = x_proj(x)                       di -> R + 2N
//   dt     = softplus(dt_proj(dt))               R -> di (bias added inside the scan)
//   h_t    = exp(dt_t A) h_{t-1} + dt_t B_t x_t  A = -exp(A_log)        (the selective scan)
//   y_t    = C_t h_t + D x_t
//   out    = out_proj(y ⊙ silu(z))               di -> d
//
// DenseMamba, variant "paper": between the update and the read-out, the state is fused with the
// states of the m shallower layers at the same time step,
//   y_t^l = C_t^l (h_t^l + sum_i phi_i(h_t^{l-i})) + D x_t^l,   phi_i(h) = Proj_i(h) ⊙ G_i(u^l_t)
// with the gate G_i a per-channel (d_inner) MLP of the block's own input u^l, broadcast over N.
// As Proj and the gate act on channels and C contracts over N, the read-out commutes with phi:
//   C_t^l phi_i(h_t^{l-i}) = phi_i(r_i),   r_i = C_t^l h_t^{l-i}   (ops/cross_layer_readout)
// so the fusion is applied to read-outs [.., di] and no d_inner x N state is ever materialised.
// Variant "input": the cheaper fusion of the SSM inputs, x^l <- x^l + sum_i phi_i(x^{l-i}),
// before x_proj and the scan. docs/models.md compares the two.
#pragma once

#include <memory>
#include <vector>

#include "models/mamba_config.hpp"
#include "nn/conv1d.hpp"
#include "nn/dense_hidden_connection.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"
#include "ops/cross_layer_readout.hpp"

namespace dssm::models {

// What a layer hands to the deeper layers that fuse it (parallel form).
struct DenseSource {
  ScanSource scan;  // "paper": the inputs of this layer's scan, re-run with a deeper layer's C
  // "paper", outside prefill: handles[i] for the deeper layer at distance i + 1, through which
  // that layer's backward hands its read-out's gradient to this layer's scan (dense_readout_pass)
  std::vector<StateHandle> handles;
  Tensor x;  // "input": this layer's SSM input [batch, di, length], before its own fusion
};

// A layer's carried recurrent state: the last d_conv - 1 conv inputs and the SSM state h.
struct MixerState {
  Tensor conv;  // [batch, di, d_conv - 1], the parameters' dtype
  Tensor ssm;   // [batch, di, N], scan_state_dtype
};

// What a layer hands to the deeper layers in recurrent mode (one token).
struct DenseStepSource {
  Tensor ssm;  // "paper": the layer's state h_t [batch, di, N], already advanced to t
  Tensor x;    // "input": its SSM input x_t [batch, di], before its own fusion
};

class MambaMixer : public nn::Module {
 public:
  MambaMixer(const MambaConfig& config, int64_t layer, Generator& gen);

  // u_in [batch, length, d] (the normed residual stream); previous: the sources of the
  // dense_inputs() shallower layers, nearest first. Returns out [batch, length, d] and this
  // layer's own source in `source`. With `final_state` (prefill), its conv inputs are followed
  // by this sequence's and its SSM state is replaced by the scan's last (the scan itself starts
  // from zero, so the SSM state must be a fresh one): what `length` steps would leave.
  Tensor forward(const Tensor& u_in, const std::vector<DenseSource>& previous, DenseSource& source,
                 MixerState* final_state = nullptr) const;

  // One token: u_in [batch, d]; state advanced in place; previous as in forward.
  Tensor step(const Tensor& u_in, MixerState& state, const std::vector<DenseStepSource>& previous,
              DenseStepSource& source) const;

  MixerState new_state(int64_t batch) const;
  int64_t dense_inputs() const { return dense_ ? dense_->num_previous() : 0; }
  Tensor A() const;  // -exp(A_log), [di, N]

 private:
  // The SSM's inputs, delta before its bias and B, C, computed from its input x.
  struct Projected {
    Tensor delta, B, C;
  };
  // x [batch, di] (one token): delta [batch, di]; B, C [batch, N].
  Projected project(const Tensor& x) const;
  // x [batch, di, length] (the forward's channel-major layout): delta [batch, di, length]; B, C
  // [batch, N, length], contiguous, as the scan reads them.
  Projected project_channels(const Tensor& x) const;

  MambaConfig config_;
  std::shared_ptr<nn::Linear> in_proj_;
  std::shared_ptr<nn::CausalConv1d> conv1d_;
  std::shared_ptr<nn::Linear> x_proj_;
  std::shared_ptr<nn::Linear> dt_proj_;
  Tensor A_log_;
  Tensor D_;
  std::shared_ptr<nn::Linear> out_proj_;
  std::shared_ptr<nn::DenseHiddenConnection> dense_;  // DenseMamba only
  // "paper": the distance to the farthest deeper layer that reads this layer's states (0: none)
  int64_t readers_ = 0;
};

}  // namespace dssm::models
