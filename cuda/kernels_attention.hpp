// cuDNN's fused flash attention for ops/attention.cpp (implemented in cuda/attention_cudnn.cpp on
// the cuDNN backend API; a build without CUDA gets the throwing versions in
// cuda/absent_attention.cpp).
//
// Causal attention of bf16 q [B, H, T, d] over k, v [B, H, S, d] with S >= T: query i sees the
// keys j <= i + S - T (the last query sees every key, as in a KV cache), scores scaled by `scale`.
// q, k and v may be any views whose last dim is contiguous (stride 1), whose other strides are
// multiples of 8 elements and whose first element is 16-byte aligned. The output and its gradient
// are [B, H, T, d] views of [B, T, H, d] buffers (a token's heads side by side, so that merging
// heads afterwards needs no copy): strides {T H d, d, H d, 1}. stats is f32 [B, H, T, 1],
// contiguous. dq, dk, dv are contiguous.
#pragma once

#include <string>

#include "tensor/tensor.hpp"

namespace dssm::cuda {

// Empty when cuDNN can run the forward pass (and, when `backward`, the backward pass) for these
// q, k, v; otherwise why not (cuDNN's words). Builds and caches the execution plans of a
// configuration on its first call, so later calls cost a map lookup.
std::string flash_attention_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool backward);

// out = softmax(scale q k^T + causal mask) v; stats = the logsumexp of each row of the masked,
// scaled scores (what backward needs to recompute the softmax).
void flash_attention_forward(const Tensor& out, const Tensor& stats, const Tensor& q,
                             const Tensor& k, const Tensor& v, double scale);

// dq, dk, dv from the forward's inputs, its output, its stats and the output gradient.
void flash_attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& grad_out, const Tensor& stats, double scale);

}  // namespace dssm::cuda
