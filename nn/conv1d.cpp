#include "nn/conv1d.hpp"

#include <cmath>

#include "nn/init.hpp"
#include "ops/causal_conv1d.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

CausalConv1d::CausalConv1d(int64_t channels, int64_t width, bool bias, Generator& gen) {
  DSSM_CHECK(channels > 0 && width > 0, "CausalConv1d",
             "expected positive sizes, got channels {} width {}", channels, width);
  const double bound = 1.0 / std::sqrt(static_cast<double>(width));
  weight_ = register_parameter("weight", Tensor::empty({channels, width}));
  init::uniform(weight_, bound, gen);
  if (bias) {
    bias_ = register_parameter("bias", Tensor::empty({channels}), false);
    init::uniform(bias_, bound, gen);
  }
}

Tensor CausalConv1d::forward(const Tensor& x, bool silu) const {
  return causal_conv1d(x, weight_, bias_, silu);
}

Tensor CausalConv1d::step(const Tensor& x_t, const Tensor& conv_state, bool silu) const {
  return causal_conv1d_step(x_t, conv_state, weight_, bias_, silu);
}

}  // namespace dssm::nn
