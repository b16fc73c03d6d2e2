// Rotary position encoding as RetNet uses it ("xpos without scaling", torchscale's theta_shift):
// pairs of adjacent channels (x_2i, x_2i+1) of the token at position n are rotated by the angle
// n theta_i, theta_i = 10000^(-i / (dim/2 - 1)) (that is 1 / 10000^linspace(0, 1, dim/2)):
//   y_2i   = x_2i cos(n theta_i) - x_2i+1 sin(n theta_i)
//   y_2i+1 = x_2i+1 cos(n theta_i) + x_2i sin(n theta_i)
// Backward is the rotation by the opposite angle. x is [..., length, dim] with dim even; the
// token at index l of the length dim sits at position n = offset + l (offset: the position of
// the first token, for recurrent generation).
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

Tensor rotary(const Tensor& x, int64_t offset = 0);

// theta_i for a head dimension `dim` (dim/2 angles, each applied to one pair of channels).
double rotary_angle(int64_t pair, int64_t dim);

}  // namespace dssm
