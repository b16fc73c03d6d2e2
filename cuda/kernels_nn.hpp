// The CUDA kernels of the network ops (softmax, cross-entropy, embedding, norms, indexing,
// dropout), implemented in cuda/<op>.cu. As in cuda/kernels.hpp: tensors already on one CUDA
// device, outputs allocated by the caller, launched on the current stream, inputs contiguous
// unless said otherwise. "C" below is the compute type: f32 for f32 and bf16, f64 for f64.
// A build without CUDA gets the throwing versions in cuda/absent_nn.cpp.
#pragma once

#include <cstdint>

#include "ops/shape.hpp"
#include "tensor/tensor.hpp"

namespace dssm::cuda {

// ops/softmax.cpp, rows of [R, C]: y = softmax(x) (or log_softmax when `log`);
// dx = y * (g - sum(g * y)) (softmax) or g - exp(y) * sum(g) (log_softmax).
void softmax_forward(const Tensor& y, const Tensor& x, bool log);
void softmax_backward(const Tensor& dx, const Tensor& g, const Tensor& y, bool log);

// ops/cross_entropy.cpp. logits [N, V], targets [N] (i32/i64, already range-checked).
// Forward: lse[n] = logsumexp(logits[n]) and row_loss[n] = lse[n] - logits[n, t_n] (0 for an
// ignored row), both [N] in C. Backward: dlogits[n] = (softmax(logits[n]) - onehot(t_n)) *
// grad_loss * scale (0 on ignored rows), grad_loss a one-element C tensor on the device.
void cross_entropy_forward(const Tensor& row_loss, const Tensor& lse, const Tensor& logits,
                           const Tensor& targets, int64_t ignore_index);
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, const Tensor& grad_loss, double scale,
                            int64_t ignore_index);

// ops/embedding.cpp. weight [V, D], ids (n ids, range-checked), out [n, D];
// grad_weight [V, D] in C, pre-zeroed: grad_weight[ids[i]] += grad_out[i] (atomic adds).
void embedding_forward(const Tensor& out, const Tensor& weight, const Tensor& ids);
void embedding_backward(const Tensor& grad_weight, const Tensor& grad_out, const Tensor& ids);

// ops/norm.cpp. x, y, g, dx [rows, width]; each row is cut into `groups` segments normalised
// separately; mean (undefined: not centred, i.e. RMS) and rstd are [rows * groups] in C;
// weight and bias [width] or undefined. Backward writes dweight / dbias (weight's dtype) when
// they are defined.
void norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, int64_t groups, double eps);
void norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
                   const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                   int64_t groups);

// ops/shape.cpp. x viewed as [outer, size, inner], index [n]:
// out[o, i, j] = x[o, index[i], j]; grad_x (in C, pre-zeroed) [o, index[i], j] += g[o, i, j].
void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                  int64_t inner);
void index_add(const Tensor& grad_x, const Tensor& g, const Tensor& index, int64_t outer,
               int64_t inner);
// out (contiguous) = cond ? a : b, cond / a / b read with broadcast strides to out's shape.
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
IndexScan scan_indices(const Tensor& index, int64_t size, bool has_ignore, int64_t ignore);

// ops/dropout.cpp: out[i] = keep(i) ? x[i] / (1 - p) : 0 with keep(i) from philox(seed, first + i).
void dropout(const Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t first);

}  // namespace dssm::cuda
