// Weight initialisers. Each overwrites a parameter in place (no autograd) with values drawn from
// `gen`, so the same seed gives the same model on any device.
#pragma once

#include "tensor/random.hpp"
#include "tensor/tensor.hpp"

namespace dssm::nn::init {

// N(0, std^2), the default of the reference DenseRetNet and LLaMA (std 0.02).
void normal(const Tensor& weight, double std, Generator& gen);
// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), for a Linear weight
// [out, in]: fan_in = in, fan_out = out.
void xavier_uniform(const Tensor& weight, double gain, Generator& gen);
// U(-bound, bound).
void uniform(const Tensor& weight, double bound, Generator& gen);
void zeros(const Tensor& weight);
void ones(const Tensor& weight);

}  // namespace dssm::nn::init
