// Conv1d: Mamba's depthwise causal convolution (one filter of `width` taps per channel, zero left
// padding, so output t sees inputs t-width+1 .. t), wrapping ops/causal_conv1d.
#pragma once

#include "nn/module.hpp"

namespace dssm::nn {

class CausalConv1d : public Module {
 public:
  // weight [channels, width], bias [channels] (optional); both ~ U(-1/sqrt(width), 1/sqrt(width)),
  // PyTorch's default for a depthwise Conv1d (fan_in = width).
  CausalConv1d(int64_t channels, int64_t width, bool bias, Generator& gen);

  // x [batch, channels, length] -> [batch, channels, length]; silu fused when `silu` is set.
  Tensor forward(const Tensor& x, bool silu = false) const;
  // One token: x_t [batch, channels], conv_state [batch, channels, width - 1] (updated in place).
  Tensor step(const Tensor& x_t, const Tensor& conv_state, bool silu = false) const;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  int64_t channels() const { return weight_.size(0); }
  int64_t width() const { return weight_.size(1); }

 private:
  Tensor weight_;
  Tensor bias_;
};

}  // namespace dssm::nn
