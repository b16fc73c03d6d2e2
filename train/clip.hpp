// Gradient clipping by global norm (Pascanu et al. 2013), as torch.nn.utils.clip_grad_norm_:
//   norm = sqrt(sum over every parameter's gradient of sum g^2)
//   coefficient = min(1, max_norm / (norm + 1e-6))
// The trainer does not rescale the gradients in place: it passes the coefficient to AdamW as
// grad_scale, which multiplies each gradient as it reads it (one pass over memory saved).
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm::train {

// The global L2 norm of the gradients of `parameters` (those without one count as zero). The
// sum runs in f64 over fixed blocks in a fixed order: the same bits for any thread count.
double global_grad_norm(const std::vector<Tensor>& parameters);

// min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0 (clipping off).
double clip_coefficient(double norm, double max_norm);

}  // namespace dssm::train
