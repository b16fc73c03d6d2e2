// Every registered op passes gradcheck on the CPU (float64 central differences).
#include <catch2/catch.hpp>

#include "ops/elementwise.hpp"
#include "ops/registry.hpp"

using namespace dssm;

TEST_CASE("every registered op passes gradcheck on the CPU", "[gradcheck]") {
  REQUIRE(registered_ops().size() >= 20);
  for (const GradcheckCase& c : registered_ops()) {
    const GradcheckResult r = gradcheck(c, Device::cpu());
    INFO(c.name << ": max abs err " << r.max_abs_err << ", max rel err " << r.max_rel_err << " "
                << r.error);
    CHECK(r.passed);
  }
}

TEST_CASE("gradcheck catches a wrong gradient", "[gradcheck]") {
  // An op whose backward is deliberately off by a factor 2 must fail.
  GradcheckCase broken{.name = "broken",
                       .make_inputs = [](Generator& g) {
                         return std::vector<Tensor>{random_normal(g, {4})};
                       },
                       .run = [](const std::vector<Tensor>& in) {
                         // y = x * x computed as x * detach(x): the gradient is x, not 2x.
                         return in[0] * in[0].detach();
                       }};
  const GradcheckResult r = gradcheck(broken, Device::cpu());
  CHECK_FALSE(r.passed);
  CHECK(r.max_abs_err > 1e-3);
}
