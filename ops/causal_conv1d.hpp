// Depthwise causal 1-D convolution, the short convolution of the Mamba block (width 4) before the
// selective scan. For batch b, channel c, time t, with zero left padding (x at t < 0 is 0):
//   y[b, c, t] = act(bias[c] + sum_{k=0}^{width-1} weight[c, k] x[b, c, t - (width-1) + k])
// act = silu when `silu` is set (fused), identity otherwise. Output t sees inputs t-width+1..t.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

// x [batch, channels, length], weight [channels, width], bias [channels] or undefined.
// Differentiable in x, weight and bias.
Tensor causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                     bool silu = false);

// One token, for generation: x_t [batch, channels]; conv_state [batch, channels, S] with
// S = width-1 or width holds the latest inputs (oldest first) and is updated in place (shifted
// left, x_t appended). Returns y_t [batch, channels]. Not differentiable (run under NoGradGuard).
Tensor causal_conv1d_step(const Tensor& x_t, const Tensor& conv_state, const Tensor& weight,
                          const Tensor& bias = Tensor(), bool silu = false);

}  // namespace dssm
