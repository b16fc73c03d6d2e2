// Rotary position encoding (Su et al. 2021, RoFormer Eq. 34) on pairs of adjacent channels
// (x_2i, x_2i+1): the token at position n is rotated by the angle n theta_i,
//   y_2i   = x_2i cos(n theta_i) - x_2i+1 sin(n theta_i)
//   y_2i+1 = x_2i+1 cos(n theta_i) + x_2i sin(n theta_i)
// with one of two frequency schedules over the dim/2 pairs i:
//   RotarySpacing::retnet  theta_i = base^(-i / (dim/2 - 1))   RetNet's "xpos without scaling"
//                          (torchscale's theta_shift: 1 / 10000^linspace(0, 1, dim/2)); the default
//   RotarySpacing::llama   theta_i = base^(-2i / dim)           LLaMA / transformers' inv_freq,
//                          base = rope_theta (10000 by default)
// Backward is the rotation by the opposite angle. x is [..., length, dim] with dim even; the
// token at index l of the length dim sits at position n = offset + l (offset: the position of
// the first token, for recurrent generation).
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

enum class RotarySpacing { retnet, llama };

struct RotaryFrequencies {
  RotarySpacing spacing = RotarySpacing::retnet;
  double base = 10000.0;  // > 1
};

Tensor rotary(const Tensor& x, int64_t offset = 0, const RotaryFrequencies& frequencies = {});

// theta_i for a head dimension `dim` (dim/2 angles, each applied to one pair of channels).
double rotary_angle(int64_t pair, int64_t dim, const RotaryFrequencies& frequencies = {});

}  // namespace dssm
