// The network ops against plain reference loops written here in f64, or against another form of
// the same op built from core ops: softmax, cross_entropy, embedding, norms, shape ops, dropout.
// Also every error path: bad targets and ids, shape and dtype mismatches.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "ops/cross_entropy.hpp"
#include "ops/dropout.hpp"
#include "ops/elementwise.hpp"
#include "ops/embedding.hpp"
#include "ops/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"

using namespace dssm;

namespace {

std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

// A fresh leaf with a gradient wanted.
Tensor leaf(const Tensor& t) {
  return t.detach().set_requires_grad(true);
}

// Backpropagates sum(y * w) and returns w, the gradient that reached y.
Tensor backprop_weighted(const Tensor& y, Generator& gen) {
  const Tensor w = Tensor::randn(y.shape(), gen, y.dtype());
  sum(y * w).backward();
  return w;
}

}  // namespace

// ---- softmax ------------------------------------------------------------------------------

TEST_CASE("softmax and log_softmax equal the textbook formula along any dim", "[nnops]") {
  Generator gen(1);
  const Tensor x = Tensor::randn({3, 4, 5}, gen, DType::f64);
  const auto xv = values(x);
  for (int64_t dim : {0, 1, 2}) {
    const auto y = values(softmax(x, dim)), ly = values(log_softmax(x, dim));
    const int64_t sizes[3] = {3, 4, 5}, strides[3] = {20, 5, 1};
    for (int64_t i = 0; i < 60; ++i) {
      // The slice through element i along `dim`.
      const int64_t start = i - ((i / strides[dim]) % sizes[dim]) * strides[dim];
      double total = 0;
      for (int64_t k = 0; k < sizes[dim]; ++k) total += std::exp(xv[start + k * strides[dim]]);
      CHECK(y[i] == Approx(std::exp(xv[i]) / total).epsilon(1e-12));
      CHECK(ly[i] == Approx(xv[i] - std::log(total)).epsilon(1e-12));
    }
  }
}

TEST_CASE("softmax rows sum to 1 and stay finite for huge logits", "[nnops]") {
  Generator gen(2);
  const Tensor x = Tensor::randn({6, 33}, gen) * 30.0 + 1e4;  // exp(1e4) overflows
  const auto y = values(softmax(x));
  const auto ly = values(log_softmax(x));
  for (int r = 0; r < 6; ++r) {
    double total = 0;
    for (int j = 0; j < 33; ++j) {
      REQUIRE(std::isfinite(ly[r * 33 + j]));
      total += y[r * 33 + j];
    }
    CHECK(total == Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("softmax and log_softmax backward equal the Jacobian products", "[nnops]") {
  Generator gen(3);
  const Tensor x0 = Tensor::randn({4, 6}, gen, DType::f64);
  for (bool log : {false, true}) {
    const Tensor x = leaf(x0);
    const Tensor y = log ? log_softmax(x) : softmax(x);
    const auto g = values(backprop_weighted(y, gen));
    const auto p = values(softmax(x0));
    std::vector<double> want(24);
    for (int r = 0; r < 4; ++r) {
      for (int i = 0; i < 6; ++i) {
        double dxi = 0;  // sum_j g_j dy_j/dx_i
        for (int j = 0; j < 6; ++j) {
          const double pi = p[r * 6 + i], pj = p[r * 6 + j];
          const double dyj_dxi = log ? (i == j) - pi : pj * ((i == j) - pi);
          dxi += g[r * 6 + j] * dyj_dxi;
        }
        want[r * 6 + i] = dxi;
      }
    }
    check_close(values(x.grad()), want, 1e-12);
  }
}

TEST_CASE("softmax rejects integer tensors and bad dims", "[nnops]") {
  CHECK_THROWS_WITH(softmax(Tensor::arange(4)),
                    Catch::Contains("softmax") && Catch::Contains("expected a floating"));
  CHECK_THROWS_AS(log_softmax(Tensor::ones({2, 3}), 2), Error);
}

// ---- cross_entropy ------------------------------------------------------------------------

TEST_CASE("cross_entropy is the mean of -log_softmax at the targets, skipping ignored rows",
          "[nnops]") {
  Generator gen(4);
  const int64_t N = 6, V = 9;
  const Tensor logits0 = Tensor::randn({N, V}, gen, DType::f64) * 3.0;
  const std::vector<int64_t> t = {3, -100, 8, 0, -100, 5};
  const Tensor logits = leaf(logits0);
  const Tensor loss = cross_entropy(logits, Tensor::from_vector(t, {N}));
  REQUIRE(loss.dim() == 0);
  const auto lsm = values(log_softmax(logits0));
  const auto sm = values(softmax(logits0));
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] != -100) total -= lsm[n * V + t[n]];
  }
  CHECK(loss.item() == Approx(total / 4).epsilon(1e-12));

  loss.backward(Tensor::scalar(2.5, DType::f64));
  std::vector<double> want(N * V, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] == -100) continue;
    for (int64_t v = 0; v < V; ++v) want[n * V + v] = (sm[n * V + v] - (v == t[n])) * 2.5 / 4;
  }
  check_close(values(logits.grad()), want, 1e-12);

  // Same loss with i32 targets; f32 logits with a huge offset stay finite and agree.
  std::vector<int32_t> t32(t.begin(), t.end());
  CHECK(cross_entropy(logits0, Tensor::from_vector(t32, {N})).item() ==
        Approx(total / 4).epsilon(1e-12));
  const Tensor shifted = (logits0 + 5e3).to(DType::f32);
  const Tensor loss32 = cross_entropy(shifted, Tensor::from_vector(t, {N}));
  CHECK(loss32.dtype() == DType::f32);
  CHECK(loss32.item() == Approx(total / 4).epsilon(1e-3));
}

TEST_CASE("cross_entropy over only ignored rows is 0 with a zero gradient", "[nnops]") {
  Generator gen(5);
  const Tensor logits = leaf(Tensor::randn({3, 4}, gen));
  const Tensor loss = cross_entropy(logits, Tensor::from_vector<int64_t>({-1, -1, -1}, {3}), -1);
  CHECK(loss.item() == 0.0);
  loss.backward();
  for (double g : values(logits.grad())) CHECK(g == 0.0);
}

TEST_CASE("cross_entropy reports bad targets and shapes", "[nnops]") {
  const Tensor logits = Tensor::zeros({4, 5});
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1, 5, 2}, {4})),
                    Catch::Contains("cross_entropy") && Catch::Contains("target 5 at row 2") &&
                        Catch::Contains("[0, 5)"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_vector<int32_t>({0, -3, 1, 2}, {4})),
                    Catch::Contains("target -3 at row 1"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1, 2}, {3})),
                    Catch::Contains("differ in N"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::zeros({4})),
                    Catch::Contains("expected targets [N] of i32 or i64"));
  CHECK_THROWS_WITH(cross_entropy(Tensor::zeros({4}), Tensor::zeros({4}, DType::i64)),
                    Catch::Contains("expected floating logits [N, V]"));
}

// ---- embedding ----------------------------------------------------------------------------

TEST_CASE("embedding gathers rows and scatter-adds gradients of repeated ids", "[nnops]") {
  Generator gen(6);
  const int64_t V = 7, D = 4;
  const Tensor weight = leaf(Tensor::randn({V, D}, gen, DType::f64));
  const std::vector<int32_t> ids = {3, 0, 3, 6, 3, 1, 0, 2, 6, 5};
  const Tensor out = embedding(weight, Tensor::from_vector(ids, {2, 5}));
  REQUIRE(out.shape() == Shape{2, 5, D});
  const auto w = values(weight), o = values(out);
  for (size_t p = 0; p < ids.size(); ++p) {
    for (int64_t j = 0; j < D; ++j) CHECK(o[p * D + j] == w[ids[p] * D + j]);
  }
  const auto g = values(backprop_weighted(out, gen));
  std::vector<double> want(V * D, 0.0);
  for (size_t p = 0; p < ids.size(); ++p) {
    for (int64_t j = 0; j < D; ++j) want[ids[p] * D + j] += g[p * D + j];
  }
  check_close(values(weight.grad()), want, 1e-12);
}

TEST_CASE("embedding backward is exact on a large table (parallel path)", "[nnops]") {
  Generator gen(7);
  const int64_t V = 50, D = 300, n = 400;
  const Tensor weight = leaf(Tensor::randn({V, D}, gen));
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = (i * 17) % V;
  const Tensor out = embedding(weight, Tensor::from_vector(ids, {n}));
  const auto g = values(backprop_weighted(out, gen));
  std::vector<double> want(V * D, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < D; ++j) want[ids[i] * D + j] += g[i * D + j];
  }
  check_close(values(weight.grad()), want, 1e-5);
}

TEST_CASE("embedding reports out-of-range ids with their position", "[nnops]") {
  const Tensor weight = Tensor::zeros({10, 3});
  CHECK_THROWS_WITH(embedding(weight, Tensor::from_vector<int64_t>({1, 2, 3, 4, 10, 0}, {2, 3})),
                    Catch::Contains("embedding") && Catch::Contains("id 10 at position [1, 1]") &&
                        Catch::Contains("[0, 10)"));
  CHECK_THROWS_WITH(embedding(weight, Tensor::from_vector<int32_t>({-1}, {1})),
                    Catch::Contains("id -1 at position [0]"));
  CHECK_THROWS_WITH(embedding(weight, Tensor::zeros({2})), Catch::Contains("i32 or i64 ids"));
  CHECK_THROWS_WITH(embedding(Tensor::zeros({10}), Tensor::zeros({2}, DType::i64)),
                    Catch::Contains("weight [V, D]"));
}

// ---- norms --------------------------------------------------------------------------------

TEST_CASE("rms_norm, layer_norm and group_rms_norm equal the plain formulas", "[nnops]") {
  Generator gen(8);
  const int64_t rows = 5, D = 12;
  const Tensor x = Tensor::randn({rows, D}, gen, DType::f64) * 2.0 + 0.5;
  const Tensor w = Tensor::randn({D}, gen, DType::f64), b = Tensor::randn({D}, gen, DType::f64);
  const auto xv = values(x), wv = values(w), bv = values(b);
  const double eps = 1e-5;
  const auto rms = values(rms_norm(x, w, eps));
  const auto ln = values(layer_norm(x, w, b, eps));
  const auto ln_nobias = values(layer_norm(x, w, Tensor(), eps));
  const auto grouped = values(group_rms_norm(x, 3, eps, w));
  const auto grouped_plain = values(group_rms_norm(x, 4, eps));
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = xv.data() + r * D;
    double sq = 0, mu = 0;
    for (int64_t j = 0; j < D; ++j) sq += xr[j] * xr[j], mu += xr[j];
    mu /= D;
    double var = 0;
    for (int64_t j = 0; j < D; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    var /= D;
    for (int64_t j = 0; j < D; ++j) {
      CHECK(rms[r * D + j] == Approx(xr[j] / std::sqrt(sq / D + eps) * wv[j]).epsilon(1e-12));
      const double xhat = (xr[j] - mu) / std::sqrt(var + eps);
      CHECK(ln[r * D + j] == Approx(xhat * wv[j] + bv[j]).epsilon(1e-12));
      CHECK(ln_nobias[r * D + j] == Approx(xhat * wv[j]).epsilon(1e-12));
    }
    for (int64_t groups : {3, 4}) {
      const int64_t S = D / groups;
      for (int64_t k = 0; k < groups; ++k) {
        double gsq = 0;
        for (int64_t j = k * S; j < (k + 1) * S; ++j) gsq += xr[j] * xr[j];
        for (int64_t j = k * S; j < (k + 1) * S; ++j) {
          const double y = xr[j] / std::sqrt(gsq / S + eps);
          if (groups == 3) CHECK(grouped[r * D + j] == Approx(y * wv[j]).epsilon(1e-12));
          if (groups == 4) CHECK(grouped_plain[r * D + j] == Approx(y).epsilon(1e-12));
        }
      }
    }
  }
}

// Small rows, and rows large enough for the kernels' multi-threaded paths (more than 32768
// elements: per-thread partial sums of dw and db).
// The f32 kernel takes LayerNorm's mean and variance in one pass (Welford's update on 64 lanes,
// then the lanes merged): rows of widths that leave lanes with one term more, or with none, and a
// mean large against the spread (where the sum of squares minus the squared sum would lose
// about 1e-3 of the variance in f32), against the two-pass formulas in float64 on the same
// f32 values.
TEST_CASE("f32 layer_norm equals the two-pass formulas at any width and a large mean", "[nnops]") {
  Generator gen(9);
  for (int64_t D : {int64_t{1}, int64_t{5}, int64_t{63}, int64_t{64}, int64_t{65}, int64_t{200},
                    int64_t{4099}}) {
    INFO("width " << D);
    const int64_t rows = 3;
    const Tensor x = Tensor::randn({rows, D}, gen) * 0.5 + 100.0;
    const Tensor w = Tensor::randn({D}, gen), b = Tensor::randn({D}, gen);
    const auto xv = values(x), wv = values(w), bv = values(b);
    const auto y = values(layer_norm(x, w, b, 1e-5));
    for (int64_t r = 0; r < rows; ++r) {
      const double* xr = xv.data() + r * D;
      double mu = 0, var = 0;
      for (int64_t j = 0; j < D; ++j) mu += xr[j];
      mu /= static_cast<double>(D);
      for (int64_t j = 0; j < D; ++j) var += (xr[j] - mu) * (xr[j] - mu);
      var /= static_cast<double>(D);
      double worst = 0;
      for (int64_t j = 0; j < D; ++j) {
        const double want = (xr[j] - mu) / std::sqrt(var + 1e-5) * wv[j] + bv[j];
        worst = std::max(worst, std::abs(y[r * D + j] - want));
      }
      CHECK(worst < 1e-4);
    }
  }
}

TEST_CASE("fused norm gradients equal those of the norms composed from core ops", "[nnops]") {
  Generator gen(9);
  for (const Shape& shape : {Shape{2, 3, 8}, Shape{50, 1000}}) {
    const int64_t D = shape.back();
    const Tensor x0 = Tensor::randn(shape, gen, DType::f64);
    const Tensor w0 = Tensor::randn({D}, gen, DType::f64), b0 = Tensor::randn({D}, gen, DType::f64);
    const Tensor g = Tensor::randn(shape, gen, DType::f64);
    const double eps = 1e-5;
    auto composed_rms = [&](const Tensor& x, const Tensor& w) {
      return x * rsqrt(mean(x * x, {-1}, true) + eps) * w;
    };
    auto composed_ln = [&](const Tensor& x, const Tensor& w, const Tensor& b) {
      const Tensor c = x - mean(x, {-1}, true);
      return c * rsqrt(mean(c * c, {-1}, true) + eps) * w + b;
    };
    auto composed_group = [&](const Tensor& x, const Tensor& w) {  // 2 groups of D / 2
      const std::vector<Tensor> parts = chunk(x, 2, -1);
      const Tensor ones = Tensor::ones({D / 2}, DType::f64);
      return concat({composed_rms(parts[0], ones), composed_rms(parts[1], ones)}, -1) * w;
    };
    struct Case {
      const char* name;
      std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)> fused, composed;
    };
    const std::vector<Case> cases = {
        {"rms_norm", [&](auto& x, auto& w, auto&) { return rms_norm(x, w, eps); },
         [&](auto& x, auto& w, auto&) { return composed_rms(x, w); }},
        {"layer_norm", [&](auto& x, auto& w, auto& b) { return layer_norm(x, w, b, eps); },
         [&](auto& x, auto& w, auto& b) { return composed_ln(x, w, b); }},
        {"group_rms_norm", [&](auto& x, auto& w, auto&) { return group_rms_norm(x, 2, eps, w); },
         [&](auto& x, auto& w, auto&) { return composed_group(x, w); }}};
    for (const Case& c : cases) {
      INFO(c.name);
      const Tensor x1 = leaf(x0), w1 = leaf(w0), b1 = leaf(b0);
      const Tensor x2 = leaf(x0), w2 = leaf(w0), b2 = leaf(b0);
      const Tensor y1 = c.fused(x1, w1, b1), y2 = c.composed(x2, w2, b2);
      check_close(values(y1), values(y2), 1e-12);
      sum(y1 * g).backward();
      sum(y2 * g).backward();
      check_close(values(x1.grad()), values(x2.grad()), 1e-10);
      check_close(values(w1.grad()), values(w2.grad()), 1e-10);
      if (b2.grad().defined()) check_close(values(b1.grad()), values(b2.grad()), 1e-10);
    }
  }
}

TEST_CASE("norms keep bf16 close to f32 and report bad parameters", "[nnops]") {
  Generator gen(10);
  const Tensor x = Tensor::randn({4, 64}, gen), w = Tensor::randn({64}, gen);
  check_close(values(rms_norm(x.to(DType::bf16), w.to(DType::bf16))), values(rms_norm(x, w)), 3e-2);
  CHECK_THROWS_WITH(rms_norm(x, Tensor::ones({63})),
                    Catch::Contains("rms_norm") && Catch::Contains("weight of shape [64]"));
  CHECK_THROWS_WITH(layer_norm(x, w, Tensor::ones({64}, DType::f64)),
                    Catch::Contains("must match the dtype"));
  CHECK_THROWS_WITH(group_rms_norm(x, 5), Catch::Contains("multiple of groups (5)"));
  CHECK_THROWS_WITH(rms_norm(x, w, -1.0), Catch::Contains("eps >= 0"));
}

// ---- shape ops ----------------------------------------------------------------------------

TEST_CASE("concat and split are inverse, chunk and stack cut and join as documented", "[nnops]") {
  Generator gen(11);
  const Tensor a = Tensor::randn({2, 1, 3}, gen), b = Tensor::randn({2, 4, 3}, gen);
  const Tensor c = concat({a, b}, 1);
  REQUIRE(c.shape() == Shape{2, 5, 3});
  const auto av = values(a), bv = values(b), cv = values(c);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j)
      for (int k = 0; k < 3; ++k) {
        const double want = j < 1 ? av[(i * 1 + j) * 3 + k] : bv[(i * 4 + j - 1) * 3 + k];
        CHECK(cv[(i * 5 + j) * 3 + k] == want);
      }
  const std::vector<Tensor> parts = split(c, {1, 4}, 1);
  CHECK(values(parts[0]) == av);
  CHECK(values(parts[1]) == bv);
  const std::vector<Tensor> chunks = chunk(c, 3, 1);
  REQUIRE(chunks.size() == 3);
  CHECK(chunks[0].size(1) == 2);
  CHECK(chunks[2].size(1) == 1);
  CHECK(values(concat(chunks, 1)) == cv);
  const Tensor s = stack({a, a}, 0);
  CHECK(s.shape() == Shape{2, 2, 1, 3});
  CHECK(values(s.select(0, 1)) == av);

  CHECK_THROWS_WITH(concat({a, Tensor::zeros({3, 1, 3})}, 1),
                    Catch::Contains("concat") && Catch::Contains("tensor 1 has shape [3, 1, 3]"));
  CHECK_THROWS_WITH(concat({a, a.to(DType::f64)}, 0), Catch::Contains("expected the dtype"));
  CHECK_THROWS_WITH(split(c, {2, 2}, 1), Catch::Contains("add up to 4, expected 5"));
  CHECK_THROWS_WITH(stack({a, b}, 0), Catch::Contains("stack"));
  CHECK_THROWS_WITH(chunk(c, 0, 1), Catch::Contains("positive number of chunks"));
}

TEST_CASE("index_select gathers and index-adds like a plain loop", "[nnops]") {
  Generator gen(12);
  const Tensor x = leaf(Tensor::randn({3, 5, 2}, gen, DType::f64));
  const std::vector<int64_t> index = {4, 0, 4, 2};
  const Tensor y = index_select(x, 1, Tensor::from_vector(index, {4}));
  REQUIRE(y.shape() == Shape{3, 4, 2});
  const auto xv = values(x), yv = values(y);
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j) CHECK(yv[(o * 4 + i) * 2 + j] == xv[(o * 5 + index[i]) * 2 + j]);
  const auto g = values(backprop_weighted(y, gen));
  std::vector<double> want(30, 0.0);
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j) want[(o * 5 + index[i]) * 2 + j] += g[(o * 4 + i) * 2 + j];
  check_close(values(x.grad()), want, 1e-12);

  CHECK_THROWS_WITH(index_select(x, 1, Tensor::from_vector<int32_t>({0, 5}, {2})),
                    Catch::Contains("index_select") && Catch::Contains("index[1] = 5") &&
                        Catch::Contains("[0, 5)"));
  CHECK_THROWS_WITH(index_select(x, 0, Tensor::zeros({2, 1}, DType::i64)),
                    Catch::Contains("1-D i32 or i64 index"));
}

TEST_CASE("where and masked_fill select with broadcasting and route gradients", "[nnops]") {
  Generator gen(13);
  const Tensor cond = Tensor::from_vector<float>({0.f, 2.f, 0.f}, {3, 1});  // nonzero is true
  const Tensor a = leaf(Tensor::randn({3, 4}, gen, DType::f64));
  const Tensor b = leaf(Tensor::randn({4}, gen, DType::f64));
  const Tensor y = where(cond, a, b);
  const auto av = values(a), bv = values(b), yv = values(y);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) CHECK(yv[i * 4 + j] == (i == 1 ? av[i * 4 + j] : bv[j]));
  const auto g = values(backprop_weighted(y, gen));
  std::vector<double> want_a(12, 0.0), want_b(4, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) (i == 1 ? want_a[i * 4 + j] : want_b[j]) += g[i * 4 + j];
  check_close(values(a.grad()), want_a, 1e-12);
  check_close(values(b.grad()), want_b, 1e-12);

  const Tensor mask = Tensor::from_vector<int64_t>({1, 0, 0, 1}, {4});
  const auto filled = values(masked_fill(a.detach(), mask, -7.0));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) CHECK(filled[i * 4 + j] == (j % 3 == 0 ? -7.0 : av[i * 4 + j]));
  // Integer tensors can be selected too (e.g. masking targets with ignore_index).
  const Tensor t = where(mask, Tensor::full({}, -100, DType::i64), Tensor::arange(4));
  CHECK(t.to_vector<int64_t>() == std::vector<int64_t>{-100, 1, 2, -100});

  CHECK_THROWS_WITH(where(cond, a, b.to(DType::f32)), Catch::Contains("where: dtype mismatch"));
  CHECK_THROWS_AS(where(Tensor::ones({2}), a, b), Error);
  CHECK_THROWS_WITH(masked_fill(b, Tensor::ones({3, 4}), 0.0),
                    Catch::Contains("does not broadcast to the shape of x"));
}

// ---- dropout ------------------------------------------------------------------------------

TEST_CASE("dropout keeps exactly the elements where the rand stream is >= p", "[nnops]") {
  const double p = 0.3;
  const int64_t n = 100000;
  Generator draw(77), drop(77);
  draw.advance(5), drop.advance(5);
  const auto u = Tensor::rand({n}, draw).to_vector<float>();
  const Tensor x = Tensor::ones({n}, DType::f64) * 2.0;
  const auto y = values(dropout(x, p, true, drop));
  CHECK(drop.offset() == draw.offset());
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = u[i] >= static_cast<float>(p);
    kept += keep;
    REQUIRE(y[i] == (keep ? 2.0 / (1 - p) : 0.0));
  }
  CHECK(static_cast<double>(kept) / n == Approx(1 - p).margin(0.01));
}

TEST_CASE("dropout is deterministic per seed, advances the stream, and masks the gradient",
          "[nnops]") {
  Generator gen(14);
  const Tensor x0 = Tensor::randn({8, 16}, gen, DType::f64);
  Generator g1(5), g2(5);
  const auto first = values(dropout(x0, 0.5, true, g1));
  CHECK(values(dropout(x0, 0.5, true, g2)) == first);
  CHECK(values(dropout(x0, 0.5, true, g2)) != first);  // the next draw, a new mask
  CHECK(g1.offset() == 128);

  Generator g3(5);
  const Tensor x = leaf(x0);
  const Tensor y = dropout(x, 0.5, true, g3);
  const auto g = values(backprop_weighted(y, gen));
  const auto xv = values(x0), dx = values(x.grad());
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool kept = first[i] != 0;
    CHECK(dx[i] == Approx(kept ? 2.0 * g[i] : 0.0).epsilon(1e-12));
  }

  Generator g4(5);
  CHECK(dropout(x0, 0.5, false, g4).same_storage(x0));  // eval: identity, no draw
  CHECK(dropout(x0, 0.0, true, g4).same_storage(x0));
  CHECK(g4.offset() == 0);
  CHECK_THROWS_WITH(dropout(x0, 1.0, true, g4),
                    Catch::Contains("dropout") && Catch::Contains("p in [0, 1), got 1"));
  CHECK_THROWS_AS(dropout(x0, -0.1, true, g4), Error);
}
