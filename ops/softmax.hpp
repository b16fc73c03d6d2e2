// softmax and log_softmax along one dim, numerically stable (the row maximum is subtracted).
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

// y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j.   Backward: dx = y * (g - sum(g * y)).
Tensor softmax(const Tensor& x, int64_t dim = -1);
// y_i = x_i - m - log sum_j exp(x_j - m).                   Backward: dx = g - exp(y) * sum(g).
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace dssm
