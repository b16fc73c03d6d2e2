// DenseMamba's cross-layer read-out (arXiv 2403.00818, Sec. 3.3, Eq. 15-17 with the Identity
// projection): layer l reads the hidden states of a previous layer j with its own C,
//   r_j[b, c, t] = sum_n C^l[b, n, t] h^j[b, c, n, t],
// where h^j is layer j's selective-scan state (ops/selective_scan.hpp). The fused read-out of
// layer l is then y_t^l + g_t * sum_j r_j (with g the per-channel gate), without ever holding the
// states h^j (d_inner x N per token): r_j is exactly a selective scan of layer j's inputs read
// out by C^l (and no D, no gate), so it is computed by re-running that scan, forward and
// backward, from inputs that layer j keeps for its own backward anyway.
#pragma once

#include <vector>

#include "ops/selective_scan.hpp"
#include "tensor/tensor.hpp"

namespace dssm {

// The scan inputs of one source layer j: u, delta [batch, channels, length], A [channels, N],
// B [batch, N, length]. delta is used as given (already biased and softplus-ed) unless
// delta_bias / delta_softplus say otherwise, as in selective_scan.
struct ScanSource {
  Tensor u, delta, A, B;
  Tensor delta_bias;
  bool delta_softplus = false;
};

// One r_j [batch, channels, length] per source, read out by C [batch, N, length].
// Differentiable in every source input and in C.
std::vector<Tensor> cross_layer_readout(const std::vector<ScanSource>& sources, const Tensor& C);

// DenseMamba's pass of one layer l in training: its own selective scan (read out by its C, with
// its D and gate when given) and the read-outs r_j = C h^j of the m shallower layers' states by the
// same C, whose backward does not re-run the shallower layers' scans backward.
//
// Why: the read-out r_j adds C_t grad_t to dL/dh^j_t, the gradient of layer j's states. Run as
// cross_layer_readout, each read-out walks layer j's recurrence backward on its own, so layer j's
// inputs get m + 1 reverse walks. Here layer l's backward computes only dC (a forward walk over
// h^j, ReadoutGradJob) and hands (grad r_j, C) to layer j's pass, whose one reverse walk then adds
// C_t grad_t of all its readers to its own term (ScanReader). Each of these m + 1 terms costs one
// multiply-add per state and step instead of a whole backward scan.
//
// The hand-over travels through autograd: each pass returns `readers` handles. A handle brings the
// layer's scan inputs (to re-run its states) and a pair of outputs that stand for its states h^l
// [batch, channels, N, length] (never held; their values are zero, expanded scalars). A deeper
// layer's pass takes the handle as a source, and its backward returns as the pair's gradient
// dL/dh^l = grad_r ⊗ C in its two factors: grad_r [batch, channels, length] for `channels`, its C
// [batch, N, length] for `states`. So layer l's backward runs before layer j's, as the graph's
// edges say, and the gradients of layer j's inputs come from layer j's pass alone. A handle is
// meant for exactly one pass (two would add their factors, which is not the sum of the products).
struct StateHandle {
  ScanSource source;        // the layer's scan inputs
  Tensor channels, states;  // [batch, channels, length], [batch, N, length]
};
struct DenseReadouts {
  Tensor own;                        // the own scan's output [batch, channels, length]
  std::vector<Tensor> readouts;      // r_j [batch, channels, length], one per source
  std::vector<StateHandle> handles;  // one per deeper reader, nearest first
};

// own: this layer's scan (C required; D, z optional). sources: the handles the shallower layers'
// passes returned for this layer, nearest first. readers: how many deeper layers will read this
// layer's states. Differentiable in own's operands (the sources' inputs through their own passes).
DenseReadouts dense_readout_pass(const ScanInputs& own, const std::vector<StateHandle>& sources,
                                 int64_t readers);

// One token, over the carried states of the sources (each [batch, channels, N], as updated by
// selective_scan_step) and this layer's C_t [batch, N]: r_j[b, c] = sum_n C_t[b, n] h_j[b, c, n],
// in C_t's dtype. A batched matrix-vector product, differentiable.
std::vector<Tensor> cross_layer_readout_step(const std::vector<Tensor>& states, const Tensor& C_t);

}  // namespace dssm
