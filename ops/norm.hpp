// Normalisations over the last dim, with fused forward and backward kernels. Statistics are
// computed in f32 (f64 for f64 inputs), also for bf16 inputs.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w, weight [D].
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// LayerNorm (Ba et al. 2016): y = (x - mean(x)) / sqrt(var(x) + eps) * w + b; bias may be
// undefined (no bias).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// RMSNorm applied separately to each of `groups` equal slices of the last dim, then scaled by
// weight [D] when it is defined: RetNet's per-head GroupNorm_h (arXiv 2307.08621, Sec. 2.2).
Tensor group_rms_norm(const Tensor& x, int64_t groups, double eps = 1e-6,
                      const Tensor& weight = Tensor());

}  // namespace dssm
