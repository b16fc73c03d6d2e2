// causal_conv1d and its one-token step against a plain loop written from the definition
//   y[b, c, t] = act(bias[c] + sum_k weight[c, k] x[b, c, t - (width-1) + k]),  x[t < 0] = 0.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/grad_mode.hpp"
#include "ops/causal_conv1d.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

std::vector<double> naive_conv(const Tensor& x_t, const Tensor& w_t, const Tensor& b_t, bool silu) {
  const int64_t Bn = x_t.size(0), Dn = x_t.size(1), L = x_t.size(2), W = w_t.size(1);
  const auto x = x_t.to_vector<double>(), w = w_t.to_vector<double>();
  const auto bias = b_t.defined() ? b_t.to_vector<double>() : std::vector<double>(Dn, 0.0);
  std::vector<double> y(x.size());
  for (int64_t b = 0; b < Bn; ++b) {
    for (int64_t c = 0; c < Dn; ++c) {
      for (int64_t t = 0; t < L; ++t) {
        double p = bias[c];
        for (int64_t k = 0; k < W; ++k) {
          const int64_t s = t - (W - 1) + k;
          if (s >= 0) p += w[c * W + k] * x[(b * Dn + c) * L + s];
        }
        y[(b * Dn + c) * L + t] = silu ? p / (1 + std::exp(-p)) : p;
      }
    }
  }
  return y;
}

void require_close(const std::vector<double>& got, const std::vector<double>& want,
                   double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

}  // namespace

TEST_CASE("causal_conv1d equals the plain loop", "[ssm]") {
  Generator g(31);
  for (int64_t width : {1, 2, 4, 9}) {
    for (bool with_bias : {false, true}) {
      for (bool silu : {false, true}) {
        INFO("width " << width << ", bias " << with_bias << ", silu " << silu);
        const Tensor x = Tensor::randn({2, 5, 13}, g, DType::f64);
        const Tensor w = Tensor::randn({5, width}, g, DType::f64);
        const Tensor b = with_bias ? Tensor::randn({5}, g, DType::f64) : Tensor();
        require_close(causal_conv1d(x, w, b, silu).to_vector<double>(), naive_conv(x, w, b, silu));
      }
    }
  }
}

TEST_CASE("causal_conv1d gradients equal those of the composed shifted sum", "[ssm]") {
  // y = silu(bias + sum_k w[:, k] * x shifted right by width-1-k), built from differentiable
  // views and elementwise ops, on a length longer than the width.
  Generator g(32);
  const int64_t W = 4, L = 20;
  const Tensor x0 = Tensor::randn({2, 3, L}, g, DType::f64),
               w0 = Tensor::randn({3, W}, g, DType::f64);
  const Tensor b0 = Tensor::randn({3}, g, DType::f64), dy = Tensor::randn({2, 3, L}, g, DType::f64);
  auto leaf = [](const Tensor& t) { return t.clone().set_requires_grad(true); };
  const Tensor x1 = leaf(x0), w1 = leaf(w0), b1 = leaf(b0), x2 = leaf(x0), w2 = leaf(w0),
               b2 = leaf(b0);
  sum(causal_conv1d(x1, w1, b1, true) * dy).backward();
  Tensor loss = Tensor::zeros({}, DType::f64);
  for (int64_t t = 0; t < L; ++t) {
    Tensor p = b2.unsqueeze(0);
    for (int64_t k = 0; k < W; ++k) {
      const int64_t s = t - (W - 1) + k;
      if (s >= 0) p = p + w2.select(1, k).unsqueeze(0) * x2.select(2, s);
    }
    loss = loss + sum(silu(p) * dy.select(2, t));
  }
  loss.backward();
  require_close(x1.grad().to_vector<double>(), x2.grad().to_vector<double>(), 1e-10);
  require_close(w1.grad().to_vector<double>(), w2.grad().to_vector<double>(), 1e-10);
  require_close(b1.grad().to_vector<double>(), b2.grad().to_vector<double>(), 1e-10);
}

TEST_CASE("causal_conv1d_step token by token equals the full convolution", "[ssm]") {
  Generator g(33);
  const int64_t W = 4, L = 10;
  const Tensor x = Tensor::randn({2, 3, L}, g, DType::f64),
               w = Tensor::randn({3, W}, g, DType::f64);
  const Tensor b = Tensor::randn({3}, g, DType::f64);
  const Tensor full = causal_conv1d(x, w, b, true);
  NoGradGuard no_grad;
  for (int64_t state_width : {W - 1, W}) {  // both conventions of the carried state
    const Tensor state = Tensor::zeros({2, 3, state_width}, DType::f64);
    for (int64_t t = 0; t < L; ++t) {
      const Tensor y_t = causal_conv1d_step(x.select(2, t), state, w, b, true);
      require_close(y_t.to_vector<double>(), full.select(2, t).to_vector<double>());
    }
    // The state now holds the last inputs, oldest first.
    require_close(state.to_vector<double>(),
                  x.narrow(2, L - state_width, state_width).to_vector<double>());
  }
}

TEST_CASE("causal_conv1d handles lengths 0 and 1 and bf16", "[ssm]") {
  Generator g(34);
  const Tensor w = Tensor::randn({3, 4}, g, DType::f64);
  for (int64_t length : {0, 1}) {
    const Tensor x = Tensor::randn({2, 3, length}, g, DType::f64).set_requires_grad(true);
    const Tensor y = causal_conv1d(x, w, Tensor(), true);
    require_close(y.to_vector<double>(), naive_conv(x, w, Tensor(), true));
    sum(y).backward();
    REQUIRE(x.grad().shape() == Shape{2, 3, length});
  }
  const Tensor x = Tensor::randn({2, 3, 50}, g, DType::f64);
  const Tensor low = causal_conv1d(x.to(DType::bf16), w.to(DType::bf16), Tensor(), true);
  const std::vector<double> want = naive_conv(x.to(DType::bf16).to(DType::f64),
                                              w.to(DType::bf16).to(DType::f64), Tensor(), true);
  require_close(low.to_vector<double>(), want, 1e-2);
}

TEST_CASE("causal_conv1d reads non-contiguous inputs", "[ssm]") {
  Generator g(35);
  const Tensor x = Tensor::randn({2, 7, 3}, g, DType::f64).transpose(1, 2);  // [2, 3, 7] view
  const Tensor w = Tensor::randn({4, 3}, g, DType::f64).transpose(0, 1);     // [3, 4] view
  REQUIRE_FALSE(x.is_contiguous());
  require_close(causal_conv1d(x, w).to_vector<double>(), naive_conv(x, w, Tensor(), false));
}

TEST_CASE("causal_conv1d rejects bad shapes naming the op", "[ssm]") {
  Generator g(36);
  const Tensor x = Tensor::randn({2, 3, 7}, g, DType::f64),
               w = Tensor::randn({3, 4}, g, DType::f64);
  REQUIRE_THROWS_WITH(causal_conv1d(x, Tensor::randn({2, 4}, g, DType::f64)),
                      Contains("causal_conv1d") && Contains("weight of shape [3, width >= 1]") &&
                          Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(causal_conv1d(x, w, Tensor::randn({4}, g, DType::f64)),
                      Contains("bias f64[3]"));
  REQUIRE_THROWS_WITH(causal_conv1d(x.select(2, 0), w), Contains("[batch, channels, length]"));
  REQUIRE_THROWS_WITH(causal_conv1d(x, w.to(DType::f32)), Contains("weight to match x"));
  NoGradGuard no_grad;
  REQUIRE_THROWS_WITH(causal_conv1d_step(x.select(2, 0), Tensor::zeros({2, 3, 2}, DType::f64), w),
                      Contains("causal_conv1d_step") && Contains("conv_state f64[2, 3, 3 or 4]"));
}
