// The CUDA kernels of the state-space ops: selective scan (cuda/selective_scan_forward.cu,
// _backward.cu, _step.cu), the depthwise causal convolution (cuda/causal_conv1d.cu) and
// DenseMamba's fused output (cuda/dense_output.cu). The op
// files check shapes, dtypes and devices and make every operand contiguous before calling these;
// outputs are allocated by the caller. A build without CUDA gets the throwing versions in
// cuda/absent_ssm.cpp.
#pragma once

#include <vector>

#include "ops/dense_output.hpp"
#include "ops/selective_scan.hpp"
#include "tensor/tensor.hpp"

namespace dssm::cuda {

// The largest state size N the scan kernels hold in registers; ops/selective_scan.cpp runs
// larger N through the CPU kernel (with a one-time notice) instead.
constexpr int64_t kMaxScanState = 16;
// The widest causal convolution the CUDA kernels handle (Mamba uses 4); wider runs on the CPU.
constexpr int64_t kMaxConvWidth = 8;

// The most scans one launch runs side by side (more are launched in groups of this many).
constexpr int kMaxScanJobs = 8;

// A buffer for the state entering every chunk of the kernels' scan ([chunks, N, batch *
// channels], state dtype): the forward fills it when given one, the backward then skips its own
// forward pass over the sequence.
Tensor selective_scan_chunk_entry(const ScanInputs& in);
// The scans of `jobs` (ScanForwardJob, ScanBackwardJob in ops/selective_scan.hpp), of one shape,
// dtype and set of present operands, in one launch (a grid row per scan). Backward jobs may share
// their dB / dC / dA tensors: the kernels add into them.
void selective_scan_forward(const std::vector<ScanForwardJob>& jobs);
void selective_scan_backward(const std::vector<ScanBackwardJob>& jobs);
// dC of read-outs (ReadoutGradJob), all jobs of one shape and dtype, in one launch.
void selective_scan_readout_dC(const std::vector<ReadoutGradJob>& jobs);
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

// DenseMamba's output y = (own + g sum_i r_i + D x) silu(z) (ops/dense_output.hpp), for at most
// kMaxDenseReadouts read-outs (the op sums further ones into the last first).
constexpr int kMaxDenseReadouts = 8;
void dense_mamba_output_forward(const DenseOutputInputs& in, const Tensor& y);
// grads.own, .x, .z (and .readout, .gate where defined) in the inputs' dtype; grads.D in f32
// (f64 for f64), zeroed by the caller.
void dense_mamba_output_backward(const DenseOutputInputs& in, const Tensor& grad_y,
                                 const DenseOutputGrads& grads);

}  // namespace dssm::cuda
