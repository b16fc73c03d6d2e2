// Token embedding: a lookup of rows of a [V, D] table.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

// out[..., :] = weight[ids[...], :]; ids i32 or i64 of any shape, out is ids.shape + [D].
// Backward: dweight[v] = sum of g[p] over the positions p with ids[p] = v (a scatter-add).
// An id outside [0, V) is an error naming its position.
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace dssm
