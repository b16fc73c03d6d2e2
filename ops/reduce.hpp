// Reductions over dims: sum, mean, max (with keepdim), as in PyTorch.
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

enum class ReduceOp { sum, max };

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // over all elements, a scalar
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// The largest value along `dim`; its gradient flows to the first position holding it.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
// The position of the largest value along `dim` (i64, not differentiable).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace dssm
