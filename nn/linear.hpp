// Linear: y = x W^T + b, with W stored [out, in] as in PyTorch (so checkpoints map one to one).
#pragma once

#include "nn/module.hpp"

namespace dssm::nn {

class Linear : public Module {
 public:
  // W ~ N(0, init_std^2) (the reference models' default), b = 0.
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen,
         double init_std = 0.02);

  // x [..., in] -> [..., out]. W^T is a transposed view handed to the GEMM, not a copy.
  Tensor forward(const Tensor& x) const;
  // The same map for features along dim 1, x [batch, in, length] -> [batch, out, length]
  // (channel-major, as in the Mamba mixer): W x + b, W shared over the batch by the GEMM.
  Tensor forward_channels(const Tensor& x) const;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }

 private:
  Tensor weight_;
  Tensor bias_;
};

}  // namespace dssm::nn
