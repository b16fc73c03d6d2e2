// Retention's three forms compute one function; rotary encodes positions as torchscale does.
// Everything in float64 on fresh random inputs, against loops written plainly here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/retention.hpp"
#include "ops/rotary.hpp"

using namespace dssm;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

struct Qkv {
  Tensor q, k, v;
};

Qkv random_qkv(Generator& gen, int64_t batch, int64_t heads, int64_t length, int64_t dk,
               int64_t dv) {
  return {Tensor::randn({batch, heads, length, dk}, gen, DType::f64),
          Tensor::randn({batch, heads, length, dk}, gen, DType::f64),
          Tensor::randn({batch, heads, length, dv}, gen, DType::f64)};
}

// o[b,h,n,:] = r_n sum_{m <= n} gamma_h^(n-m) (q_n . k_m) v_m, with r_n summed term by term.
Tensor naive_retention(const Qkv& in, const std::vector<double>& gammas, bool normalize) {
  const int64_t B = in.q.size(0), H = in.q.size(1), L = in.q.size(2), dk = in.q.size(3),
                dv = in.v.size(3);
  const std::vector<double> q = in.q.to_vector<double>(), k = in.k.to_vector<double>(),
                            v = in.v.to_vector<double>();
  std::vector<double> o(static_cast<size_t>(B * H * L * dv), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t bh = b * H + h;
      for (int64_t n = 0; n < L; ++n) {
        double decay_sum = 0;
        for (int64_t m = 0; m <= n; ++m) decay_sum += std::pow(gammas[h], n - m);
        const double r = normalize ? 1.0 / std::sqrt(decay_sum) : 1.0;
        for (int64_t m = 0; m <= n; ++m) {
          double qk = 0;
          for (int64_t d = 0; d < dk; ++d)
            qk += q[(bh * L + n) * dk + d] * k[(bh * L + m) * dk + d];
          const double weight = r * std::pow(gammas[h], n - m) * qk;
          for (int64_t e = 0; e < dv; ++e)
            o[(bh * L + n) * dv + e] += weight * v[(bh * L + m) * dv + e];
        }
      }
    }
  }
  return Tensor::from_vector(o, {B, H, L, dv});
}

// Runs the recurrent step over every token from a zero state; calls each(t, o_t).
void run_recurrent(const Qkv& in, const RetentionOptions& options,
                   const std::function<void(int64_t, const Tensor&)>& each) {
  Tensor state =
      Tensor::zeros({in.q.size(0), in.q.size(1), in.q.size(3), in.v.size(3)}, DType::f64);
  for (int64_t t = 0; t < in.q.size(2); ++t) {
    const RetentionStepResult step =
        retention_step(in.q.select(2, t), in.k.select(2, t), in.v.select(2, t), state, t, options);
    each(t, step.out);
    state = step.state;
  }
}

// The recurrent outputs gathered into a [B, H, L, dv] tensor (not differentiable).
Tensor recurrent_retention(const Qkv& in, const RetentionOptions& options) {
  Tensor out = Tensor::empty({in.q.size(0), in.q.size(1), in.q.size(2), in.v.size(3)}, DType::f64);
  run_recurrent(in, options, [&](int64_t t, const Tensor& o) { out.select(2, t).copy_from(o); });
  return out;
}

// The gradients of loss(q, k, v) with respect to q, k, v.
std::vector<Tensor> gradients(const Qkv& in, const std::function<Tensor(const Qkv&)>& loss) {
  Qkv leaf{in.q.detach().set_requires_grad(), in.k.detach().set_requires_grad(),
           in.v.detach().set_requires_grad()};
  loss(leaf).backward();
  return {leaf.q.grad(), leaf.k.grad(), leaf.v.grad()};
}

}  // namespace

TEST_CASE("the parallel form equals a plain loop over positions", "[retention]") {
  Generator gen(11);
  const Qkv in = random_qkv(gen, 2, 3, 9, 4, 5);
  const std::vector<double> custom = {0.5, 0.8, 0.99};
  for (bool normalize : {true, false}) {
    INFO("normalize " << normalize);
    CHECK(max_abs_diff(retention_parallel(in.q, in.k, in.v, {.normalize = normalize}),
                       naive_retention(in, retention_default_gammas(3), normalize)) < 1e-12);
    const RetentionOptions options{.gammas = Tensor::from_vector(custom, {3}),
                                   .normalize = normalize};
    CHECK(max_abs_diff(retention_parallel(in.q, in.k, in.v, options),
                       naive_retention(in, custom, normalize)) < 1e-12);
  }
}

TEST_CASE("the standard decays are 1 - 2^(-5-h)", "[retention]") {
  const std::vector<double> gammas = retention_default_gammas(4);
  REQUIRE(gammas.size() == 4);
  CHECK(gammas[0] == 1.0 - 1.0 / 32);
  CHECK(gammas[3] == 1.0 - 1.0 / 256);
}

TEST_CASE("parallel, chunkwise and recurrent forms agree", "[retention]") {
  Generator gen(12);
  const int64_t length = 11;
  const Qkv in = random_qkv(gen, 2, 3, length, 4, 5);
  const Tensor w = Tensor::randn({2, 3, length, 5}, gen, DType::f64);  // loss = sum(o * w)
  for (bool normalize : {true, false}) {
    const RetentionOptions options{.normalize = normalize};
    const Tensor parallel = retention_parallel(in.q, in.k, in.v, options);
    const std::vector<Tensor> parallel_grads = gradients(
        in, [&](const Qkv& x) { return sum(retention_parallel(x.q, x.k, x.v, options) * w); });
    for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{4}, length, length + 5}) {
      INFO("normalize " << normalize << ", chunk " << chunk);
      CHECK(max_abs_diff(retention_chunkwise(in.q, in.k, in.v, chunk, options), parallel) < 1e-9);
      const std::vector<Tensor> chunk_grads = gradients(in, [&](const Qkv& x) {
        return sum(retention_chunkwise(x.q, x.k, x.v, chunk, options) * w);
      });
      for (size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(chunk_grads[i], parallel_grads[i]) < 1e-9);
    }
    INFO("normalize " << normalize << ", recurrent");
    CHECK(max_abs_diff(recurrent_retention(in, options), parallel) < 1e-9);
    const std::vector<Tensor> step_grads = gradients(in, [&](const Qkv& x) {
      Tensor loss = Tensor::zeros({}, DType::f64);
      run_recurrent(x, options,
                    [&](int64_t t, const Tensor& o) { loss = loss + sum(o * w.select(2, t)); });
      return loss;
    });
    for (size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(step_grads[i], parallel_grads[i]) < 1e-9);
  }
}

TEST_CASE("long sequences keep their decays finite", "[retention]") {
  // 0.5^1500 underflows to 0 in float64: a form that computed gamma^n / gamma^m would divide 0 by
  // 0.
  Generator gen(13);
  const Qkv in = random_qkv(gen, 1, 2, 1500, 2, 3);
  const RetentionOptions options{.gammas = Tensor::from_vector(std::vector<double>{0.5, 0.9}, {2})};
  const Tensor parallel = retention_parallel(in.q, in.k, in.v, options);
  const Tensor chunkwise = retention_chunkwise(in.q, in.k, in.v, 64, options);
  for (double x : chunkwise.to_vector<double>()) REQUIRE(std::isfinite(x));
  CHECK(max_abs_diff(chunkwise, parallel) < 1e-9);
}

TEST_CASE("retention of lengths 0 and 1", "[retention]") {
  Generator gen(14);
  const Qkv empty = random_qkv(gen, 2, 2, 0, 4, 6);
  for (const Tensor& o : {retention_parallel(empty.q, empty.k, empty.v),
                          retention_chunkwise(empty.q, empty.k, empty.v, 3)}) {
    CHECK(o.shape() == Shape{2, 2, 0, 6});
  }
  // One token: o = r_0 (q . k) v with r_0 = 1.
  const Qkv one = random_qkv(gen, 2, 2, 1, 4, 6);
  const Tensor expected = sum(one.q * one.k, {3}, true) * one.v;
  CHECK(max_abs_diff(retention_parallel(one.q, one.k, one.v), expected) < 1e-12);
  CHECK(max_abs_diff(retention_chunkwise(one.q, one.k, one.v, 3), expected) < 1e-12);
  CHECK(max_abs_diff(recurrent_retention(one, {}), expected) < 1e-12);
}

TEST_CASE("retention rejects bad inputs with a clear message", "[retention]") {
  Generator gen(15);
  const Qkv in = random_qkv(gen, 1, 2, 5, 4, 6);
  using Catch::Matchers::Contains;
  const Tensor k_dk3 = Tensor::randn({1, 2, 5, 3}, gen, DType::f64);
  CHECK_THROWS_WITH(retention_chunkwise(in.q, k_dk3, in.v, 2), Contains("retention_chunkwise") &&
                                                                   Contains("differ in dk") &&
                                                                   Contains("[1, 2, 5, 4]"));
  const Tensor v_heads3 = Tensor::randn({1, 3, 5, 6}, gen, DType::f64);
  CHECK_THROWS_WITH(retention_parallel(in.q, in.k, v_heads3),
                    Contains("retention_parallel") && Contains("differ in heads"));
  const RetentionOptions three_gammas{
      .gammas = Tensor::from_vector(std::vector<double>{.9, .9, .9}, {3})};
  CHECK_THROWS_WITH(retention_parallel(in.q, in.k, in.v, three_gammas),
                    Contains("expected gammas of shape [2]") && Contains("f64[3]"));
  const RetentionOptions bad_gamma{.gammas =
                                       Tensor::from_vector(std::vector<double>{.9, 1.5}, {2})};
  CHECK_THROWS_WITH(retention_chunkwise(in.q, in.k, in.v, 2, bad_gamma),
                    Contains("gamma[1] = 1.5"));
  CHECK_THROWS_WITH(retention_chunkwise(in.q, in.k, in.v, 0),
                    Contains("retention_chunkwise") && Contains("chunk_size >= 1, got 0"));
  CHECK_THROWS_WITH(retention_parallel(in.q, in.k, in.v.to(DType::f32)),
                    Contains("one floating dtype"));
  const Tensor state = Tensor::zeros({1, 2, 4, 5}, DType::f64);
  CHECK_THROWS_WITH(
      retention_step(in.q.select(2, 0), in.k.select(2, 0), in.v.select(2, 0), state, 0),
      Contains("retention_step") && Contains("expected state of shape [1, 2, 4, 6]"));
  CHECK_THROWS_WITH(rotary(Tensor::randn({2, 5, 3}, gen, DType::f64)), Contains("even dim"));
}

TEST_CASE("rotary equals a plain loop over adjacent pairs", "[retention]") {
  Generator gen(16);
  const int64_t rows = 3, length = 6, dim = 8, offset = 4;
  const Tensor x = Tensor::randn({rows, length, dim}, gen, DType::f64);
  const std::vector<double> in = x.to_vector<double>();
  std::vector<double> expected(in.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t l = 0; l < length; ++l) {
      for (int64_t i = 0; i < dim / 2; ++i) {
        // theta_i = 1 / 10000^linspace(0, 1, dim/2)[i]
        const double theta = 1.0 / std::pow(10000.0, static_cast<double>(i) / (dim / 2 - 1));
        const double angle = static_cast<double>(offset + l) * theta;
        const size_t at = static_cast<size_t>((r * length + l) * dim + 2 * i);
        expected[at] = in[at] * std::cos(angle) - in[at + 1] * std::sin(angle);
        expected[at + 1] = in[at + 1] * std::cos(angle) + in[at] * std::sin(angle);
      }
    }
  }
  CHECK(max_abs_diff(rotary(x, offset), Tensor::from_vector(expected, {rows, length, dim})) <
        1e-12);
}

TEST_CASE("rotary of one token at offset p equals row p of the whole sequence", "[retention]") {
  Generator gen(17);
  const Tensor x = Tensor::randn({2, 2, 9, 6}, gen, DType::f64);
  const Tensor whole = rotary(x);
  for (int64_t p : {0, 3, 8}) {
    INFO("position " << p);
    CHECK(max_abs_diff(rotary(x.narrow(2, p, 1), p), whole.narrow(2, p, 1)) < 1e-12);
  }
  CHECK(rotary(x.narrow(2, 0, 0)).shape() == Shape{2, 2, 0, 6});
}
