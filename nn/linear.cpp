#include "nn/linear.hpp"

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen,
               double init_std) {
  DSSM_CHECK(in_features > 0 && out_features > 0, "Linear",
             "expected positive sizes, got in {} out {}", in_features, out_features);
  weight_ = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init::normal(weight_, init_std, gen);
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}), false);
}

Tensor Linear::forward(const Tensor& x) const {
  DSSM_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "Linear",
             "expected input [..., {}], got {}", in_features(), describe(x));
  const Tensor y = matmul(x, weight_.transpose(0, 1));
  return bias_.defined() ? y + bias_ : y;
}

Tensor Linear::forward_channels(const Tensor& x) const {
  DSSM_CHECK(x.dim() == 3 && x.size(1) == in_features(), "Linear",
             "expected channel-major input [batch, {}, length], got {}", in_features(),
             describe(x));
  const Tensor y = matmul(weight_, x);
  return bias_.defined() ? y + bias_.unsqueeze(-1) : y;
}

}  // namespace dssm::nn
