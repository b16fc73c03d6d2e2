#include "nn/rms_norm.hpp"

#include "ops/norm.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  DSSM_CHECK(dim > 0 && eps >= 0, "RMSNorm", "expected dim > 0 and eps >= 0, got dim {} eps {}",
             dim, eps);
  weight_ = register_parameter("weight", Tensor::ones({dim}), false);
}

Tensor RMSNorm::forward(const Tensor& x) const {
  DSSM_CHECK(x.dim() >= 1 && x.size(-1) == weight_.size(0), "RMSNorm",
             "expected input [..., {}], got {}", weight_.size(0), describe(x));
  return rms_norm(x, weight_, eps_);
}

}  // namespace dssm::nn
