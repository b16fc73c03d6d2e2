// dense_mamba_output, DenseMamba's fused y = (own + g ⊙ sum_i r_i + D ⊙ x) ⊙ silu(z), against the
// same expression written with the elementwise ops (forward and every gradient, through autograd),
// in f64, and its refusals of operands that do not fit.
#include <catch2/catch.hpp>

#include <cmath>

#include "ops/dense_output.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

void require_close(const Tensor& got, const Tensor& want, double tol = 1e-12) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(g[i] - w[i]) <= tol * (1 + std::abs(w[i])));
  }
}

Tensor leaf(const Tensor& t) {
  return t.defined() ? t.clone().set_requires_grad(true) : t;
}

// The op and the composite form on copies of the same operands, each followed by the backward of
// sum(y * dy); their outputs and gradients must agree.
void check_against_composite(int64_t readouts, bool gated, int64_t length) {
  INFO(readouts << " read-outs, gated " << gated << ", length " << length);
  Generator g(readouts * 10 + gated + length);
  const Shape rows{2, 3, length};
  const Tensor own = Tensor::randn(rows, g, DType::f64), x = Tensor::randn(rows, g, DType::f64);
  const Tensor z = Tensor::randn(rows, g, DType::f64), dy = Tensor::randn(rows, g, DType::f64);
  const Tensor D = Tensor::randn({3}, g, DType::f64);
  const Tensor gate = gated ? Tensor::randn(rows, g, DType::f64) : Tensor();
  std::vector<Tensor> rs;
  for (int64_t i = 0; i < readouts; ++i) rs.push_back(Tensor::randn(rows, g, DType::f64));

  struct Leaves {
    Tensor own, gate, x, D, z;
    std::vector<Tensor> rs;
  };
  auto leaves = [&] {
    Leaves l{leaf(own), leaf(gate), leaf(x), leaf(D), leaf(z), {}};
    for (const Tensor& r : rs) l.rs.push_back(leaf(r));
    return l;
  };
  const Leaves fused = leaves(), plain = leaves();
  const Tensor y_fused =
      dense_mamba_output(fused.own, fused.rs, fused.gate, fused.x, fused.D, fused.z);
  Tensor hidden = plain.own;
  if (readouts > 0) {
    Tensor s = plain.rs[0];
    for (int64_t i = 1; i < readouts; ++i) s = s + plain.rs[i];
    hidden = hidden + (gated ? s * plain.gate : s);
  }
  const Tensor y_plain = (hidden + plain.x * plain.D.unsqueeze(-1)) * silu(plain.z);
  require_close(y_fused, y_plain);

  sum(y_fused * dy).backward();
  sum(y_plain * dy).backward();
  require_close(fused.own.grad(), plain.own.grad());
  require_close(fused.x.grad(), plain.x.grad());
  require_close(fused.D.grad(), plain.D.grad());
  require_close(fused.z.grad(), plain.z.grad());
  if (gated && readouts > 0) require_close(fused.gate.grad(), plain.gate.grad());
  if (gated && readouts == 0) require_close(fused.gate.grad(), own * 0.0);  // dq s with s = 0
  for (int64_t i = 0; i < readouts; ++i) require_close(fused.rs[i].grad(), plain.rs[i].grad());
}

}  // namespace

TEST_CASE("dense_mamba_output equals the composite expression, forward and backward", "[ssm]") {
  for (int64_t readouts : {0, 1, 4, 10}) {
    for (bool gated : {false, true}) check_against_composite(readouts, gated, 7);
  }
  check_against_composite(3, true, 1);
}

TEST_CASE("dense_mamba_output refuses operands that do not fit", "[ssm]") {
  Generator g(5);
  const Tensor t = Tensor::randn({2, 3, 4}, g, DType::f64);
  const Tensor D = Tensor::randn({3}, g, DType::f64);
  const Tensor other = Tensor::randn({2, 3, 5}, g, DType::f64);
  REQUIRE_THROWS_WITH(dense_mamba_output(t, {t, other}, t, t, D, t),
                      Contains("dense_mamba_output") && Contains("readouts[1]"));
  REQUIRE_THROWS_WITH(dense_mamba_output(t, {t}, t, t, Tensor::randn({4}, g, DType::f64), t),
                      Contains("expected D f64[3]"));
  REQUIRE_THROWS_WITH(dense_mamba_output(t, {t}, t.to(DType::f32), t, D, t), Contains("gate"));
  REQUIRE_THROWS_WITH(
      dense_mamba_output(Tensor::randn({3, 4}, g, DType::f64), {}, Tensor(), Tensor(), D, Tensor()),
      Contains("[batch, channels, length]"));
}
