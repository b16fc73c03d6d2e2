// Mamba's selective scan (Gu & Dao 2023, Algorithm 2 / Eq. 2a-2b with ZOH for A and Euler for B),
// as used by Mamba and DenseMamba (arXiv 2403.00818, Eq. 15-17). For each batch b, channel c and
// state n, over time t:
//   dt_t   = softplus(delta_t + delta_bias)        (bias and softplus optional)
//   h_t    = exp(dt_t A[c, n]) h_{t-1} + dt_t B[b, n, t] u_t       (h_{-1} = 0)
//   y_t    = sum_n C[b, n, t] h_t[n] + D[c] u_t
//   out_t  = y_t * silu(z_t)                         (gate optional)
// The math of forward and backward is written out in docs/ops-ssm.md.
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

// u, delta, z: [batch, channels, length]; A: [channels, N]; B, C: [batch, N, length];
// D, delta_bias: [channels]. D, z and delta_bias may be undefined (absent).
struct ScanInputs {
  Tensor u, delta, A, B, C, D;
  Tensor z;
  Tensor delta_bias;
  bool delta_softplus = false;
};

struct ScanResult {
  Tensor y;           // [batch, channels, length], the dtype of u
  Tensor last_state;  // [batch, channels, N] in the compute dtype (f32 for bf16); if asked for
};

// Differentiable in every floating input, and through last_state too.
ScanResult selective_scan(const ScanInputs& in, bool return_last_state = false);
Tensor selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor& z = Tensor(),
                      const Tensor& delta_bias = Tensor(), bool delta_softplus = false);

// Several scans of one shape read out by the same C [batch, N, length], in one pass: one CUDA
// launch runs them all forward, one backward, and C's gradient is summed over them inside it.
// DenseMamba's cross-layer read-outs (ops/cross_layer_readout.hpp) are such scans. Each scans[j]
// brings u, delta, A, B, delta_bias and delta_softplus, and no C, D or z; returns the y_j =
// sum_n C h^j of each. Differentiable in every input.
std::vector<Tensor> selective_scans_shared_C(const std::vector<ScanInputs>& scans, const Tensor& C);

// One token of the same recurrence, for generation: u, delta, z are [batch, channels], B, C are
// [batch, N], `state` is [batch, channels, N] in the compute dtype (f32 for bf16 inputs) and is
// updated in place from h_{t-1} to h_t. Returns out_t [batch, channels]. Not differentiable: call
// it without gradients (NoGradGuard) — it throws otherwise.
Tensor selective_scan_step(const ScanInputs& in_t, const Tensor& state);

// The dtype scan states are kept in: f64 for f64 inputs, f32 otherwise.
inline DType scan_state_dtype(DType input) {
  return input == DType::f64 ? DType::f64 : DType::f32;
}

// Gradients of every operand, as the kernels (CPU and CUDA) produce them: du, ddelta, dz in the
// inputs' dtype; dA, dB, dC, dD, ddelta_bias in the state dtype, pre-zeroed (they accumulate
// over channels or batch). dD, dz, ddelta_bias are undefined when the operand is absent.
struct ScanGradients {
  Tensor du, ddelta, dA, dB, dC, dD, dz, ddelta_bias;
};

// One scan of a pass of several (the kernels run the scans of a pass side by side; DenseMamba's
// cross-layer read-outs are such a pass): checked, contiguous operands and their outputs.
// last_state may be undefined; chunk_entry: where the CUDA forward keeps the state entering each
// of its chunks for the backward (cuda::selective_scan_chunk_entry), or undefined; y undefined
// (CUDA only) when only chunk_entry is wanted.
struct ScanForwardJob {
  ScanInputs in;
  Tensor y, last_state, chunk_entry;
};
// A deeper layer's read-out r = C h of a scan's states (DenseMamba's cross-layer read-out,
// ops/cross_layer_readout.hpp): that layer's C [batch, N, length] and the gradient of its
// read-out, grad [batch, channels, length] in u's dtype, both contiguous. The read-out adds
// C_t grad_t to dL/dh_t, so the scan's backward adds it to its own C_t gy_t in the reverse
// recurrence: one reverse walk serves the scan and all of its readers.
struct ScanReader {
  Tensor C, grad;
};
// grad_last_state may be undefined (zero); chunk_entry: the forward's, or undefined (the backward
// then computes it). readers: the deeper read-outs whose gradients join this scan's (their dC
// is not computed here: see ReadoutGradJob).
struct ScanBackwardJob {
  ScanInputs in;
  Tensor grad_y, grad_last_state;
  ScanGradients grads;
  Tensor chunk_entry;
  std::vector<ScanReader> readers;
};
// The gradient of a read-out r = C h of a scan's states with respect to C alone:
//   dC[b, n, t] += sum_c grad[b, c, t] h[b, c, n, t]
// (a forward pass over the states; the scan's own backward takes the rest, through ScanReader).
// `in`: checked, contiguous u, delta, A, B, delta_bias, delta_softplus (its C, D, z are not
// read); grad [batch, channels, length] in u's dtype, contiguous; dC [batch, N, length] in the
// state dtype, zeroed by the caller, and may be shared by several jobs, which add into it.
struct ReadoutGradJob {
  ScanInputs in;
  Tensor grad, dC;
};

}  // namespace dssm
