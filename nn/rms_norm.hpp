// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w over the last dim; the
// pre-norm of every block of every model here.
#pragma once

#include "nn/module.hpp"

namespace dssm::nn {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);  // w = 1, no weight decay

  Tensor forward(const Tensor& x) const;  // x [..., dim]

  const Tensor& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  Tensor weight_;
  double eps_;
};

}  // namespace dssm::nn
