// gradcheck: compares an op's analytic gradient (from backward) with central finite differences
// in float64, for every element of every floating input.
//
// The op's output y is reduced to the scalar L = sum(y * w) with fixed random weights w, so one
// backward pass gives dL/dx for all inputs; the numerical dL/dx_i is
// (L(x_i + eps) - L(x_i - eps)) / (2 eps). An element passes when
// |analytic - numeric| <= atol + rtol * |numeric|.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

struct GradcheckCase {
  std::string name;
  // Fresh random inputs for one check, in f64, on the CPU. Floating inputs are differentiated;
  // integer inputs (indices, targets) are passed through.
  std::function<std::vector<Tensor>(Generator&)> make_inputs;
  // Runs the op on inputs already placed on the device under test.
  std::function<Tensor(const std::vector<Tensor>&)> run;
  // Inputs that must not be differentiated even though floating (e.g. a mask).
  std::vector<size_t> constant_inputs = {};
  double atol = 1e-6;
  double rtol = 1e-5;
  double eps = 1e-6;
  bool cuda = true;  // also checked on CUDA (when the op has a CUDA kernel)
};

struct GradcheckResult {
  std::string op;
  std::string device;
  size_t inputs = 0;      // number of differentiated inputs
  size_t elements = 0;    // number of input elements checked
  double max_abs_err = 0;
  double max_rel_err = 0;
  bool passed = false;
  std::string error;      // set when the op threw
};

GradcheckResult gradcheck(const GradcheckCase& c, Device device, uint64_t seed = 1234);

}  // namespace dssm
