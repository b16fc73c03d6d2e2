// The autograd engine: accumulation, no_grad, detach, freed graphs, non-scalar outputs.
#include <catch2/catch.hpp>

#include "autograd/grad_mode.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"

using namespace dssm;

TEST_CASE("a tensor used twice receives the sum of both gradients", "[autograd]") {
  Generator gen(1);
  Tensor x = Tensor::randn({5}, gen, DType::f64).set_requires_grad();
  // y = sum(x * x + 3 x): dy/dx = 2x + 3.
  Tensor y = sum(x * x + x * 3.0);
  y.backward();
  const auto xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) CHECK(g[i] == Approx(2 * xv[i] + 3));
}

TEST_CASE("gradients accumulate across backward calls until cleared", "[autograd]") {
  Generator gen(2);
  Tensor w = Tensor::randn({3, 2}, gen, DType::f64).set_requires_grad();
  const Tensor a = Tensor::randn({4, 3}, gen, DType::f64);
  sum(matmul(a, w)).backward();
  const auto once = w.grad().to_vector<double>();
  sum(matmul(a, w)).backward();
  const auto twice = w.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == Approx(2 * once[i]));
  // d/dw sum(a w) = column sums of a, repeated over w's columns.
  const auto av = a.to_vector<double>();
  for (int k = 0; k < 3; ++k) {
    double col = 0;
    for (int i = 0; i < 4; ++i) col += av[i * 3 + k];
    CHECK(once[k * 2] == Approx(col));
    CHECK(once[k * 2 + 1] == Approx(col));
  }
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("no_grad records nothing and detach cuts the graph", "[autograd]") {
  Tensor x = Tensor::ones({2}, DType::f64).set_requires_grad();
  {
    NoGradGuard guard;
    const Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
  }
  const Tensor z = x * 2.0;
  CHECK(z.requires_grad());
  CHECK_FALSE(z.is_leaf());
  const Tensor d = z.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.same_storage(z));
}

TEST_CASE("backward errors are readable", "[autograd]") {
  Tensor x = Tensor::ones({3}, DType::f64).set_requires_grad();
  const Tensor y = x * 2.0;
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("non-scalar"));
  CHECK_THROWS_WITH(Tensor::ones({2}).backward(), Catch::Contains("does not require grad"));
  const Tensor s = sum(exp(x));
  s.backward();
  CHECK_THROWS_WITH(s.backward(), Catch::Contains("already freed"));
  const Tensor r = sum(exp(x));
  r.backward(Tensor(), /*retain_graph=*/true);
  r.backward();  // allowed once more
  CHECK_THROWS_WITH(y.backward(Tensor::ones({4}, DType::f64)), Catch::Contains("does not match"));
  CHECK_THROWS_WITH(Tensor::arange(3).set_requires_grad(), Catch::Contains("floating"));
}

TEST_CASE("a non-scalar backward takes the given gradient", "[autograd]") {
  Generator gen(4);
  Tensor x = Tensor::randn({2, 3}, gen, DType::f64).set_requires_grad();
  const Tensor g = Tensor::randn({2, 3}, gen, DType::f64);
  tanh(x).backward(g);
  const auto xv = x.to_vector<double>(), gv = g.to_vector<double>();
  const auto dx = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double t = std::tanh(xv[i]);
    CHECK(dx[i] == Approx(gv[i] * (1 - t * t)));
  }
}

TEST_CASE("a deep chain does not overflow the stack", "[autograd]") {
  Tensor x = Tensor::scalar(1.0, DType::f64).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0001;
  y.backward();
  CHECK(x.grad().item() == Approx(std::pow(1.0001, 20000)));
}
