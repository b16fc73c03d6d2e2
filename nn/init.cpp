#include "nn/init.hpp"

#include <cmath>

#include "autograd/grad_mode.hpp"
#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

namespace dssm::nn::init {

void normal(const Tensor& weight, double std, Generator& gen) {
  NoGradGuard no_grad;
  weight.copy_from(Tensor::randn(weight.shape(), gen, weight.dtype(), weight.device()) * std);
}

void uniform(const Tensor& weight, double bound, Generator& gen) {
  NoGradGuard no_grad;
  const Tensor u = Tensor::rand(weight.shape(), gen, weight.dtype(), weight.device());
  weight.copy_from(u * (2.0 * bound) - bound);
}

void xavier_uniform(const Tensor& weight, double gain, Generator& gen) {
  DSSM_CHECK(weight.dim() == 2, "xavier_uniform", "expected a [out, in] weight, got {}",
             describe(weight));
  const double fan_out = static_cast<double>(weight.size(0));
  const double fan_in = static_cast<double>(weight.size(1));
  uniform(weight, gain * std::sqrt(6.0 / (fan_in + fan_out)), gen);
}

void zeros(const Tensor& weight) {
  weight.fill_(0.0);
}
void ones(const Tensor& weight) {
  weight.fill_(1.0);
}

}  // namespace dssm::nn::init
