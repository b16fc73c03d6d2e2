#include "nn/dropout.hpp"

#include "ops/dropout.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

Dropout::Dropout(double p, Generator& gen) : p_(p), gen_(&gen) {
  DSSM_CHECK(p >= 0.0 && p < 1.0, "Dropout", "expected p in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) const {
  return dropout(x, p_, is_training(), *gen_);
}

}  // namespace dssm::nn
