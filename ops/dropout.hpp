// Inverted dropout with a counter-based mask that needs no storage.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

// Element i is kept iff uniform_f32(philox4x32_10(gen.seed(), first + i)) >= p, with
// first = gen.advance(x.numel()) (the stream of Tensor::rand), and kept values are scaled by
// 1 / (1 - p). Identity (no draw) when !training or p == 0; p outside [0, 1) is an error.
// Backward multiplies g by the same mask, recomputed from (seed, first): nothing is saved.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

}  // namespace dssm
