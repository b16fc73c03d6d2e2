// Shapes and strides (in elements), and the small amount of arithmetic on them that views and
// broadcasting need.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dssm {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

// Wraps a possibly negative dim into [0, ndim); throws naming `op` if out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// The NumPy broadcast of two shapes (trailing dims aligned, 1 stretches); throws naming `op`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace dssm
