#include "nn/gate_mlp.hpp"

#include "ops/elementwise.hpp"

namespace dssm::nn {

GateMLP::GateMLP(int64_t in_features, int64_t hidden_features, int64_t out_features, Generator& gen)
    : fc1_(register_module("fc1",
                           std::make_shared<Linear>(in_features, hidden_features, false, gen))),
      fc2_(register_module("fc2",
                           std::make_shared<Linear>(hidden_features, out_features, false, gen))) {}

Tensor GateMLP::forward(const Tensor& x) const {
  return fc2_->forward(silu(fc1_->forward(x)));
}

Tensor GateMLP::forward_channels(const Tensor& x) const {
  return fc2_->forward_channels(silu(fc1_->forward_channels(x)));
}

}  // namespace dssm::nn
