// Causal scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need", Eq. 1):
//   out = softmax(q k^T / sqrt(d) + M) v,   M_ij = -inf where key j comes after query i,
// for q [B, H, T, d] and k, v [B, H, S, d]; `offset` is the position of the first query among the
// keys, so query i sees the keys j <= i + offset (offset = S - T with a KV cache, 0 in training).
//
// On CUDA in bf16, with d a multiple of 8 up to 128, offset == S - T and more than one query
// (a decoding step stays on the composite: every new key count would need a new cuDNN plan), this
// runs cuDNN's fused flash attention (cuda/attention_cudnn.cpp): no [T, S] matrix is ever written
// to memory. Anywhere else, or when cuDNN has no engine for the configuration (said once on
// stderr), it runs the composite below, whose gradients come from the ops it is made of.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset);

// The composite path on any device and dtype: bmm(q, k^T) * d^-1/2, masked_fill, softmax, bmm.
Tensor causal_attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                  int64_t offset);

// Whether causal_attention takes cuDNN's fused path for these inputs (it builds and caches cuDNN's
// plans on first use; with inputs that require a gradient, the backward plan too).
bool causal_attention_is_fused(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset);

}  // namespace dssm
