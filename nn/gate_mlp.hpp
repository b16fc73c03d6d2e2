// GateMLP: the two-layer bias-free MLP  y = W2 silu(W1 x),  in -> hidden -> out. DenseSSM's
// "MLP" select module (the gate of Eq. 11) and the reference's HiddenProjection.
#pragma once

#include <memory>

#include "nn/linear.hpp"
#include "nn/module.hpp"

namespace dssm::nn {

class GateMLP : public Module {
 public:
  GateMLP(int64_t in_features, int64_t hidden_features, int64_t out_features, Generator& gen);

  Tensor forward(const Tensor& x) const;           // [..., in] -> [..., out]
  Tensor forward_channels(const Tensor& x) const;  // [batch, in, T] -> [batch, out, T]

  Linear& fc1() { return *fc1_; }
  Linear& fc2() { return *fc2_; }

 private:
  std::shared_ptr<Linear> fc1_;
  std::shared_ptr<Linear> fc2_;
};

}  // namespace dssm::nn
