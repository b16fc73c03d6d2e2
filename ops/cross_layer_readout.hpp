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

// One token, over the carried states of the sources (each [batch, channels, N], as updated by
// selective_scan_step) and this layer's C_t [batch, N]: r_j[b, c] = sum_n C_t[b, n] h_j[b, c, n],
// in C_t's dtype. A batched matrix-vector product, differentiable.
std::vector<Tensor> cross_layer_readout_step(const std::vector<Tensor>& states, const Tensor& C_t);

}  // namespace dssm
