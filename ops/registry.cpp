#include "ops/registry.hpp"

#include <algorithm>

#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

std::vector<GradcheckCase>& registry() {
  static std::vector<GradcheckCase> cases;
  return cases;
}

}  // namespace

OpRegistration::OpRegistration(GradcheckCase c) {
  auto& cases = registry();
  for (const GradcheckCase& existing : cases) {
    DSSM_CHECK(existing.name != c.name, "op registry", "op '{}' registered twice", c.name);
  }
  cases.push_back(std::move(c));
  std::sort(cases.begin(), cases.end(),
            [](const GradcheckCase& a, const GradcheckCase& b) { return a.name < b.name; });
}

const std::vector<GradcheckCase>& registered_ops() {
  return registry();
}

Tensor random_normal(Generator& gen, const Shape& shape) {
  return Tensor::randn(shape, gen, DType::f64);
}

Tensor random_uniform(Generator& gen, const Shape& shape, double lo, double hi) {
  return add_scalar(mul_scalar(Tensor::rand(shape, gen, DType::f64), hi - lo), lo);
}

}  // namespace dssm
