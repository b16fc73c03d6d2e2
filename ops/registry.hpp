// The op registry: every differentiable op registers at least one gradcheck case from its own
// file, next to its forward and backward:
//
//   namespace { const OpRegistration kRelu{{.name = "relu", .make_inputs = ..., .run = ...}}; }
//
// `dssm gradcheck` and the test suite run every registered case, so no op goes unchecked.
#pragma once

#include <vector>

#include "autograd/gradcheck.hpp"

namespace dssm {

const std::vector<GradcheckCase>& registered_ops();  // sorted by name

struct OpRegistration {
  explicit OpRegistration(GradcheckCase c);
};

// Helpers for input generators: f64 tensors on the CPU.
Tensor random_normal(Generator& gen, const Shape& shape);
Tensor random_uniform(Generator& gen, const Shape& shape, double lo, double hi);

}  // namespace dssm
