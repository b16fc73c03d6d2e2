// The CUDA kernels of the state-space ops: selective scan (cuda/selective_scan.cu) and the
// depthwise causal convolution (cuda/causal_conv1d.cu). The op files check shapes, dtypes and
// devices and make every operand contiguous before calling these; outputs are allocated by the
// caller. A build without CUDA gets the throwing versions in cuda/absent_ssm.cpp.
#pragma once

#include "ops/selective_scan.hpp"
#include "tensor/tensor.hpp"

namespace dssm::cuda {

// The largest state size N the scan kernels hold in registers; ops/selective_scan.cpp runs
// larger N through the CPU kernel (with a one-time notice) instead.
constexpr int64_t kMaxScanState = 16;
// The widest causal convolution the CUDA kernels handle (Mamba uses 4); wider runs on the CPU.
constexpr int64_t kMaxConvWidth = 8;

// A buffer for the state entering every chunk of the kernels' scan ([chunks, N, batch *
// channels], state dtype): the forward fills it when given one, the backward then skips its own
// forward pass over the sequence.
Tensor selective_scan_chunk_entry(const ScanInputs& in);
// y [batch, channels, length]; last_state [batch, channels, N] (state dtype) or undefined;
// chunk_entry from selective_scan_chunk_entry(in), or undefined.
void selective_scan_forward(const ScanInputs& in, const Tensor& y, const Tensor& last_state,
                            const Tensor& chunk_entry);
// grad_last_state may be undefined (zero). `grads` as documented at ScanGradients. chunk_entry:
// the forward's (filled), or undefined (the backward computes it).
void selective_scan_backward(const ScanInputs& in, const Tensor& grad_y,
                             const Tensor& grad_last_state, const ScanGradients& grads,
                             const Tensor& chunk_entry);
// One token: in_t holds [batch, channels] / [batch, N] operands; state updated in place.
void selective_scan_step(const ScanInputs& in_t, const Tensor& state, const Tensor& y);

// y[b, c, t] = act(bias[c] + sum_k weight[c, k] x[b, c, t - width + 1 + k]); bias may be undefined.
void causal_conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                           const Tensor& y);
// dx in x's dtype; dweight, dbias (undefined when there is no bias) in f32 (f64 for f64).
void causal_conv1d_backward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                            const Tensor& grad_y, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dbias);
// x_t [batch, channels]; state [batch, channels, S >= width-1] updated in place; y_t [batch,
// channels].
void causal_conv1d_step(const Tensor& x_t, const Tensor& state, const Tensor& weight,
                        const Tensor& bias, bool silu, const Tensor& y_t);

}  // namespace dssm::cuda
