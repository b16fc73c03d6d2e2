// Core ops against plain reference loops: reductions, matmul, elementwise math, errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"

using namespace dssm;

TEST_CASE("matmul equals a naive triple loop, with transposed and batched operands", "[ops]") {
  Generator gen(21);
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor a = Tensor::randn({2, 5, 3}, gen, dtype);
    const Tensor b = Tensor::randn({2, 4, 3}, gen, dtype);  // used transposed: [2, 3, 4]
    const Tensor c = matmul(a, b.transpose(1, 2));
    REQUIRE(c.shape() == Shape{2, 5, 4});
    const auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 4; ++j) {
          double s = 0;
          for (int k = 0; k < 3; ++k) s += av[(n * 5 + i) * 3 + k] * bv[(n * 4 + j) * 3 + k];
          CHECK(cv[(n * 5 + i) * 4 + j] == Approx(s).epsilon(dtype == DType::f32 ? 1e-5 : 1e-12));
        }
  }
  CHECK_THROWS_WITH(matmul(Tensor::ones({2, 3}), Tensor::ones({4, 2})),
                    Catch::Contains("inner dimensions differ"));
  CHECK_THROWS_WITH(matmul(Tensor::ones({2, 3}), Tensor::ones({3, 2}, DType::f64)),
                    Catch::Contains("dtype mismatch"));
}

TEST_CASE("bf16 matmul is close to f32", "[ops]") {
  Generator gen(22);
  const Tensor a = Tensor::randn({16, 32}, gen), b = Tensor::randn({32, 8}, gen);
  const auto ref = matmul(a, b).to_vector<float>();
  const auto low = matmul(a.to(DType::bf16), b.to(DType::bf16)).to_vector<float>();
  for (size_t i = 0; i < ref.size(); ++i) CHECK(low[i] == Approx(ref[i]).margin(0.15));
}

TEST_CASE("sum, mean and max reduce the named dims", "[ops]") {
  Generator gen(23);
  const Tensor x = Tensor::randn({3, 4, 5}, gen, DType::f64);
  const auto v = x.to_vector<double>();
  const auto s = sum(x, {0, 2}).to_vector<double>();
  const auto m = mean(x, {1}, true);
  const auto mx = max(x, -1);
  const auto am = argmax(x, -1).to_vector<int64_t>();
  REQUIRE(m.shape() == Shape{3, 1, 5});
  for (int j = 0; j < 4; ++j) {
    double total = 0;
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 5; ++k) total += v[(i * 4 + j) * 5 + k];
    CHECK(s[j] == Approx(total));
  }
  const auto mv = m.to_vector<double>(), mxv = mx.to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 5; ++k) {
      double total = 0;
      for (int j = 0; j < 4; ++j) total += v[(i * 4 + j) * 5 + k];
      CHECK(mv[i * 5 + k] == Approx(total / 4));
    }
    for (int j = 0; j < 4; ++j) {
      int best = 0;
      for (int k = 1; k < 5; ++k) best = v[(i * 4 + j) * 5 + k] > v[(i * 4 + j) * 5 + best] ? k : best;
      CHECK(am[i * 4 + j] == best);
      CHECK(mxv[i * 4 + j] == v[(i * 4 + j) * 5 + best]);
    }
  }
  CHECK(sum(x).item() == Approx(std::accumulate(v.begin(), v.end(), 0.0)));
  CHECK_THROWS_WITH(sum(x, {3}), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(sum(Tensor::arange(4)), Catch::Contains("floating"));
}

TEST_CASE("elementwise math matches the C library", "[ops]") {
  Generator gen(24);
  const Tensor x = Tensor::randn({257}, gen, DType::f64);  // odd size: exercises loop tails
  const auto v = x.to_vector<double>();
  const auto e = exp(x).to_vector<double>(), si = silu(x).to_vector<double>();
  const auto ge = gelu(x).to_vector<double>(), sp = softplus(x).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK(e[i] == Approx(std::exp(v[i])));
    CHECK(si[i] == Approx(v[i] / (1 + std::exp(-v[i]))));
    CHECK(ge[i] == Approx(0.5 * v[i] *
                          (1 + std::tanh(std::sqrt(2 / M_PI) * (v[i] + 0.044715 * std::pow(v[i], 3))))));
    CHECK(sp[i] == Approx(std::log1p(std::exp(v[i]))));
  }
  CHECK(softplus(Tensor::full({1}, 100.0, DType::f64)).item() == 100.0);  // no overflow
}
