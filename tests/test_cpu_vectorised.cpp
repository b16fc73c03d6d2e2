// The vectorised f32 CPU kernels (ops/cpu_vectorised*.hpp) against
// the scalar definitions of ops/elementwise_math.hpp evaluated in f64 on the same f32 inputs: the
// unary ops forward and backward (on random inputs and on a sweep of the whole f32 range), and
// the f32 kernels of softmax, log_softmax, cross_entropy and the norms against their f64 path.
// bf16 runs the same f32 code on converted values and rounds once.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu_exp_sum.hpp"
#include "ops/cpu_vectorised_unary.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "ops/elementwise_math.hpp"
#include "ops/norm.hpp"
#include "ops/softmax.hpp"

using namespace dssm;

namespace {

constexpr double kRelTol = 1e-6;
constexpr double kMinNormal = std::numeric_limits<float>::min();  // below: compared absolutely
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Normal values at magnitudes from 1e-6 to 100, an odd count above the kernels' parallel
// threshold (so every chunk size and the SIMD remainders run), then the special values.
std::vector<float> random_inputs(uint32_t seed, bool positive) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  const float scales[] = {1e-6f, 1e-2f, 1.0f, 4.0f, 30.0f, 100.0f};
  std::vector<float> v(100003);
  for (size_t i = 0; i < v.size(); ++i) v[i] = normal(rng) * scales[rng() % 6];
  const std::vector<float> specials = {
      0.0f,   -0.0f,  1e-30f, -1e-30f, 1e-40f,  -1e-40f, 1.4e-45f, 0.5f,     -0.5f,  15.0f,
      19.99f, 20.0f,  20.01f, 25.0f,   -20.5f,  50.0f,   87.0f,    88.7f,    88.73f, 89.0f,
      100.0f, -87.0f, -88.7f, -89.0f,  -100.0f, -104.0f, -110.0f,  -1000.0f, 1e30f,  -1e30f};
  v.insert(v.end(), specials.begin(), specials.end());
  if (positive) {
    for (float& x : v) x = std::abs(x);
  }
  return v;
}

// got (f32) against the f64 reference: same NaN-ness, same infinities, else within kRelTol
// relative, plus `allowance` (see below), plus FLT_MIN absolute (denormal results).
void check_against(const char* label, const std::vector<float>& inputs,
                   const std::vector<float>& got, const std::function<double(double)>& reference,
                   bool allow_conditioning) {
  REQUIRE(got.size() == inputs.size());
  double worst = 0;
  size_t conditioned = 0;  // elements within tolerance only through `allowance`
  for (size_t i = 0; i < got.size(); ++i) {
    const double x = inputs[i], want = reference(x), have = got[i];
    if (std::isnan(want) || std::isnan(have) || std::isinf(want) || std::isinf(have)) {
      INFO("x = " << x << ": got " << have << ", want " << want);
      CHECK((std::isnan(want) ? std::isnan(have) : have == static_cast<float>(want)));
      continue;
    }
    // Formulas with a cancellation that no f32 evaluation avoids (gelu at x < -3: x e^{-2u(x)}
    // has relative condition |2 x u'(x)| ~ 35 at x = -5) are judged by the input: the error may
    // be what moving x by 4 f32 ulps moves the exact result.
    double allowance = 0;
    if (allow_conditioning) {
      const double dx = std::abs(x) * 4 * std::numeric_limits<float>::epsilon() / 2;
      allowance = std::max(std::abs(reference(x + dx) - want), std::abs(reference(x - dx) - want));
    }
    const double error = std::abs(have - want);
    if (std::abs(want) >= 1e-30) worst = std::max(worst, error / std::abs(want));
    if (error > kRelTol * std::abs(want) + kMinNormal) ++conditioned;
    INFO("x = " << x << ": got " << have << ", want " << want);
    CHECK(error <= kRelTol * std::abs(want) + allowance + kMinNormal);
  }
  // DSSM_TEST_VERBOSE=1 prints the accuracy seen.
  if (std::getenv("DSSM_TEST_VERBOSE")) {
    std::fprintf(
        stderr,
        "%s: largest relative error (|f| > 1e-30) %.3g (%.2f x 2^-24); %zu of %zu beyond %.0e\n",
        label, worst, worst / std::numeric_limits<float>::epsilon() * 2, conditioned, got.size(),
        kRelTol);
  }
}

std::vector<float> f32_values(const Tensor& t) {
  return t.to_vector<float>();
}

Tensor f32_tensor(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

struct UnaryCase {
  const char* name;
  UnaryOp op;
  bool positive;            // inputs >= 0 (log, sqrt, rsqrt)
  bool allow_conditioning;  // see check_against
};

const UnaryCase kForwardCases[] = {
    {"exp", UnaryOp::exp, false, false},           {"log", UnaryOp::log, true, false},
    {"sqrt", UnaryOp::sqrt, true, false},          {"rsqrt", UnaryOp::rsqrt, true, false},
    {"sigmoid", UnaryOp::sigmoid, false, false},   {"tanh", UnaryOp::tanh, false, false},
    {"silu", UnaryOp::silu, false, false},         {"gelu", UnaryOp::gelu, false, true},
    {"softplus", UnaryOp::softplus, false, false}, {"relu", UnaryOp::relu, false, false},
};

double definition_forward(UnaryOp op, double x) {
  return dispatch_unary(op, [&]<UnaryOp kOp>() { return math::unary_forward<kOp, double>(x, 0); });
}

double definition_derivative(UnaryOp op, double x, double y) {
  return dispatch_unary(
      op, [&]<UnaryOp kOp>() { return math::unary_derivative<kOp, double>(x, y, 0); });
}

// gelu and gelu' in f64 written with sigmoid(2u) = 0.5 (1 + tanh(u)): the definition's 1 + tanh(u)
// cancels in f64 too once x < -4 (it returns 0 where the value is -1e-32). The test below checks
// that these forms equal the definition where it is accurate.
double gelu_f64(double x) {
  const double u = math::gelu_inner(x);
  return x / (1 + std::exp(-2 * u));
}
double gelu_derivative_f64(double x) {
  const double u = math::gelu_inner(x), du = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
  const double sig = 1 / (1 + std::exp(-2 * u)), one_minus_sig = 1 / (1 + std::exp(2 * u));
  return std::abs(x) > 1e100 ? (x > 0 ? 1.0 : 0.0) : sig * (1 + 2 * x * du * one_minus_sig);
}

double forward_f64(UnaryOp op, double x) {
  return op == UnaryOp::gelu ? gelu_f64(x) : definition_forward(op, x);
}

double derivative_f64(UnaryOp op, double x, double y) {
  return op == UnaryOp::gelu ? gelu_derivative_f64(x) : definition_derivative(op, x, y);
}

bool derivative_uses_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
         op == UnaryOp::sigmoid || op == UnaryOp::tanh;
}

}  // namespace

TEST_CASE("the f64 reference forms of gelu equal its definition where that is accurate", "[ops]") {
  for (double x = -3; x <= 30; x += 0.01) {
    INFO("x = " << x);
    CHECK(gelu_f64(x) == Approx(definition_forward(UnaryOp::gelu, x)).epsilon(1e-12).margin(1e-14));
    CHECK(gelu_derivative_f64(x) ==
          Approx(definition_derivative(UnaryOp::gelu, x, 0)).epsilon(1e-12).margin(1e-14));
  }
}

TEST_CASE("vectorised f32 unary ops equal the f64 scalar definition", "[ops]") {
  uint32_t seed = 1;
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      std::vector<float> x = random_inputs(seed, c.positive);
      x.insert(x.end(), {kInf, -kInf, kNaN});
      const auto y = f32_values(unary(c.op, f32_tensor(x)));
      check_against(
          c.name, x, y, [&](double v) { return forward_f64(c.op, v); }, c.allow_conditioning);
    }
    ++seed;
  }
}

// Every 4099th f32 bit pattern from a random start: all binades of both signs, the denormals,
// +-0, +-inf and NaNs, at about a million points.
std::vector<float> bit_pattern_sweep(uint32_t seed) {
  std::vector<float> v;
  for (uint64_t bits = std::mt19937(seed)() % 4099; bits < (uint64_t{1} << 32); bits += 4099) {
    v.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  }
  v.insert(v.end(), {0.0f, -0.0f, kInf, -kInf});
  return v;
}

TEST_CASE("vectorised f32 unary ops equal the f64 definition over the whole f32 range", "[ops]") {
  uint32_t seed = 200;
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      const std::vector<float> x = bit_pattern_sweep(seed);
      const auto y = f32_values(unary(c.op, f32_tensor(x)));
      check_against(
          c.name, x, y, [&](double v) { return forward_f64(c.op, v); }, c.allow_conditioning);
    }
    ++seed;
  }
}

TEST_CASE("vectorised f32 unary backward equals g * f' of the f64 scalar definition", "[ops]") {
  uint32_t seed = 100;
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      // Backward from the input: x finite or NaN, and g = 1 so that the check sees f'(x) itself.
      std::vector<float> x = random_inputs(seed, c.positive);
      x.push_back(kNaN);
      const Tensor leaf = f32_tensor(x).set_requires_grad(true);
      const Tensor y = unary(c.op, leaf);
      y.backward(Tensor::ones(y.shape()));
      const auto dx = f32_values(leaf.grad()), yv = f32_values(y);
      // The kernel reads the f32 output y for some ops: the reference reads the same y.
      std::vector<float> saved = derivative_uses_output(c.op) ? yv : x;
      const bool from_y = derivative_uses_output(c.op);
      // silu' and gelu' cross zero (silu' at x = -2.40, gelu' at x = -0.75): there the relative
      // error of any f32 evaluation is unbounded; judged by the input as in check_against.
      const bool crosses_zero = c.op == UnaryOp::silu || c.op == UnaryOp::gelu;
      check_against(
          c.name, saved, dx,
          [&](double s) {
            return from_y ? derivative_f64(c.op, 0, s) : derivative_f64(c.op, s, 0);
          },
          c.allow_conditioning || crosses_zero);
    }
    ++seed;
  }
}

TEST_CASE("bf16 unary ops compute in f32 and round once", "[ops]") {
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      const std::vector<float> x = random_inputs(7, c.positive);
      const Tensor xb = f32_tensor(x).to(DType::bf16);
      const auto want = f32_values(unary(c.op, xb.to(DType::f32)).to(DType::bf16));
      const auto got = f32_values(unary(c.op, xb));
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(((std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i]));
      }
      // Backward: dx = bf16(g * f'(saved)) with g and saved read as bf16.
      const Tensor leaf = xb.detach().set_requires_grad(true);
      const Tensor y = unary(c.op, leaf);
      const Tensor g = Tensor::randn(y.shape(), DType::bf16);
      y.backward(g);
      const Tensor leaf32 = xb.to(DType::f32).set_requires_grad(true);
      // f32 backward from the same saved values: y32 rounded to bf16 equals y (checked above).
      const Tensor y32 = unary(c.op, leaf32);
      if (!derivative_uses_output(c.op)) {
        y32.backward(g.to(DType::f32));
        const auto got_dx = f32_values(leaf.grad());
        const auto want_dx = f32_values(leaf32.grad().to(DType::bf16));
        for (size_t i = 0; i < got_dx.size(); ++i) {
          INFO("element " << i);
          CHECK(((std::isnan(got_dx[i]) && std::isnan(want_dx[i])) || got_dx[i] == want_dx[i]));
        }
      } else {
        // From the bf16 output: g f'(y) in f64 at the same bf16 g and y, which the kernel rounds
        // once to bf16 (2^-9 relative), after an f32 evaluation (1e-6 of the terms, ~|g|).
        const auto yv = f32_values(y), gv = f32_values(g), got_dx = f32_values(leaf.grad());
        for (size_t i = 0; i < got_dx.size(); ++i) {
          const double want = gv[i] * derivative_f64(c.op, 0, yv[i]);
          INFO("y = " << yv[i] << ", g = " << gv[i] << ": got " << got_dx[i] << ", want " << want);
          if (std::isnan(want) || std::isinf(static_cast<float>(want))) {  // NaN or past f32
            CHECK(
                (std::isnan(want) ? std::isnan(got_dx[i]) : got_dx[i] == static_cast<float>(want)));
          } else {
            CHECK(std::abs(got_dx[i] - want) <=
                  0x1p-8 * std::abs(want) + 1e-6 * std::abs(gv[i]) + kMinNormal);
          }
        }
      }
    }
  }
}

// The bf16 ops with a lookup table (ops/cpu_vectorised_unary.hpp) on every bf16 value: forward
// equals the f32 kernel's result on the same value rounded to bf16, and is within 2^-8 relative of
// the f64 definition (half a bf16 ulp plus the f32 error); backward of the ops that save x equals
// the f32 backward rounded, at random g (a fresh seed each run, printed on failure).
TEST_CASE("bf16 table ops equal the f32 ops rounded, on every bf16 value", "[ops]") {
  std::vector<float> all;
  for (uint32_t bits = 0; bits < 65536; ++bits) all.push_back(std::bit_cast<float>(bits << 16));
  const Tensor x = f32_tensor(all).to(DType::bf16), x32 = x.to(DType::f32);
  const uint32_t seed = std::random_device{}();
  INFO("g seed " << seed);
  Generator gen(seed);
  const Tensor g = Tensor::randn(x.shape(), gen).to(DType::bf16);
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      const auto got = f32_values(unary(c.op, x));
      const auto want = f32_values(unary(c.op, x32).to(DType::bf16));
      const auto xv = f32_values(x32);
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("x = " << xv[i] << ": got " << got[i] << ", want " << want[i]);
        CHECK(((std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i]));
        const double exact = forward_f64(c.op, xv[i]);
        if (c.op != UnaryOp::gelu && std::isfinite(exact) && std::isfinite(got[i])) {
          CHECK(std::abs(got[i] - exact) <= 0x1p-8 * std::abs(exact) + kMinNormal);
        }
      }
      if (!derivative_uses_output(c.op)) {  // (backward from y is arithmetic, no table)
        const Tensor leaf = x.detach().set_requires_grad(true);
        unary(c.op, leaf).backward(g);
        const Tensor leaf32 = x32.detach().set_requires_grad(true);
        unary(c.op, leaf32).backward(g.to(DType::f32));
        const auto got_dx = f32_values(leaf.grad());
        const auto want_dx = f32_values(leaf32.grad().to(DType::bf16));
        for (size_t i = 0; i < got_dx.size(); ++i) {
          INFO("x = " << xv[i] << ": got " << got_dx[i] << ", want " << want_dx[i]);
          CHECK(((std::isnan(got_dx[i]) && std::isnan(want_dx[i])) || got_dx[i] == want_dx[i]));
        }
      }
    }
  }
}

#ifdef __AVX512BW__
// Where AVX-512 is compiled in, bf16 sqrt and rsqrt compute from 256 offsets, and the ops with a
// lean form on 16 lanes compute with it, instead of looking up the table: the offsets and the
// lean forms must have passed their check against the table (else they are not used, and the
// test above would only have tested the table).
TEST_CASE("bf16 ops compute where AVX-512 allows, not look up", "[ops]") {
  CHECK(vec::bf16_half_exponent_offsets<UnaryOp::sqrt>().exact);
  CHECK(vec::bf16_half_exponent_offsets<UnaryOp::rsqrt>().exact);
#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
  CHECK(vec::bf16_lanes_exact<UnaryOp::exp>());
  CHECK(vec::bf16_lanes_exact<UnaryOp::log>());
  CHECK(vec::bf16_lanes_exact<UnaryOp::sigmoid>());
  CHECK(vec::bf16_lanes_exact<UnaryOp::tanh>());
  CHECK(vec::bf16_lanes_exact<UnaryOp::silu>());
  CHECK(vec::bf16_lanes_exact<UnaryOp::gelu>());
#endif
}
#endif

// Every table op on a run of bf16 values of a length that is no multiple of any vector width,
// starting at an odd element: the vector loops' last partial vectors.
TEST_CASE("bf16 table ops on odd lengths equal the f32 ops rounded", "[ops]") {
  std::vector<float> values;
  for (uint32_t bits = 0x3e01; bits < 0x3e01 + 1001; ++bits) {
    values.push_back(std::bit_cast<float>(bits << 16));
  }
  const Tensor x = f32_tensor(values).to(DType::bf16).narrow(0, 1, 999);
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      CHECK(f32_values(unary(c.op, x)) ==
            f32_values(unary(c.op, x.to(DType::f32)).to(DType::bf16)));
    }
  }
}

namespace {

// Rows of awkward widths (not multiples of any SIMD width or chunk), normal values at scale 5,
// the first row shifted by `offset` and the second with masked (-inf) entries.
Tensor logits_like(int64_t rows, int64_t cols, uint32_t seed, bool masked, float offset) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 5.0f);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = normal(rng);
  for (int64_t j = 0; j < cols; ++j) v[j] += offset;
  if (masked) {
    for (int64_t j = 0; j < cols; j += 3) v[cols + j] = -kInf;
  }
  return Tensor::from_vector(v, {rows, cols});
}

// Within tol relative, or tol / 10 of the largest magnitude in `want`: the gradients of these ops
// subtract row sums (g - sum(g) e^y, y (g - sum(g y)), gw - mean(gw) - ...), whose f32 rounding
// is relative to the row, not to the (possibly cancelled) element.
void check_close(const Tensor& got, const Tensor& want, double tol) {
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  REQUIRE(g.size() == w.size());
  double scale = 0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << " of " << g.size());
    CHECK(g[i] == Approx(w[i]).epsilon(tol).margin(tol / 10 * scale));
  }
}

// f(x) in f32 against f(x) in f64 (the scalar definition), forward and backward.
void check_f32_against_f64(const std::vector<Tensor>& inputs,
                           const std::function<Tensor(const std::vector<Tensor>&)>& f, double tol) {
  std::vector<Tensor> in32, in64;
  for (const Tensor& t : inputs) {
    in32.push_back(t.detach().set_requires_grad(true));
    in64.push_back(t.to(DType::f64).set_requires_grad(true));
  }
  const Tensor y32 = f(in32), y64 = f(in64);
  check_close(y32, y64, tol);
  Generator gen(5);
  const Tensor g = Tensor::randn(y32.shape(), gen);
  y32.backward(g);
  y64.backward(g.to(DType::f64));
  // Gradients hold f32 sums over whole rows (sum(g) over 4099 entries for log_softmax) whose
  // terms cancel: vec::sum's rounding (64 partial sums per block of 1024, then the block totals,
  // in the same order in every build) is relative to the row's magnitude, not to the cancelled
  // element: 10x the forward's tolerance.
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_close(in32[i].grad(), in64[i].grad(), 10 * tol);
  }
}

}  // namespace

TEST_CASE("f32 softmax and log_softmax kernels equal the f64 ones", "[ops]") {
  for (int64_t cols : {1, 7, 1000, 4099}) {
    const Tensor x = logits_like(40, cols, static_cast<uint32_t>(cols), cols > 3, 1000.0f);
    check_f32_against_f64(
        {x}, [](const auto& in) { return softmax(in[0], -1); }, 1e-5);
    check_f32_against_f64(
        {x}, [](const auto& in) { return log_softmax(in[0], -1); }, 1e-5);
  }
  // Masked entries get exactly 0.
  const auto y = softmax(logits_like(2, 10, 3, true, 0.0f), -1).to_vector<float>();
  for (int64_t j = 0; j < 10; j += 3) CHECK(y[10 + j] == 0.0f);
}

#ifdef __AVX512F__
// cross_entropy's exponentials (ops/cpu_exp_sum.hpp) on every 1021st f32 in [-86.5, 0]: within
// 3 x 2^-24 of e^t in f64; 0 below -86.5, NaN kept.
TEST_CASE("the table exp of cross_entropy's sums is within 3 x 2^-24 of e^t", "[ops]") {
  std::vector<float> t;
  for (uint32_t bits = 0x80000000u; bits <= std::bit_cast<uint32_t>(-86.5f); bits += 1021) {
    t.push_back(std::bit_cast<float>(bits));
  }
  t.insert(t.end(), {-86.5f, -86.51f, -100.0f, -1e30f, -kInf, kNaN});
  t.resize((t.size() + 15) / 16 * 16, 0.0f);
  const vec::Exp2Table table{_mm512_load_si512(vec::exp2_fractions().bits),
                             _mm512_load_si512(vec::exp2_fractions().bits + 16)};
  double worst = 0;
  for (size_t i = 0; i < t.size(); i += 16) {
    float got[16];
    _mm512_storeu_ps(got, vec::exp_nonpositive_table_lanes(_mm512_loadu_ps(&t[i]), table));
    for (size_t k = 0; k < 16; ++k) {
      INFO("t = " << t[i + k] << ": got " << got[k]);
      if (std::isnan(t[i + k])) {
        CHECK(std::isnan(got[k]));
      } else if (t[i + k] < -86.5f) {
        CHECK(got[k] == 0.0f);
      } else {
        const double want = std::exp(static_cast<double>(t[i + k]));
        worst = std::max(worst, std::abs(got[k] - want) / want);
      }
    }
  }
  if (std::getenv("DSSM_TEST_VERBOSE")) {
    std::fprintf(stderr, "table exp: largest relative error %.3g on %zu inputs\n", worst, t.size());
  }
  CHECK(worst <= 3 * 0x1p-24);
}
#endif

TEST_CASE("f32 cross_entropy kernels equal the f64 ones", "[ops]") {
  for (int64_t vocab : {5, 1000, 4099}) {
    // (lse is kept in f32: at logits near 1000 its rounding, 3e-5, would show in the gradient.)
    const Tensor logits = logits_like(33, vocab, 11, false, 30.0f);
    std::vector<int64_t> targets(33);
    for (int64_t n = 0; n < 33; ++n) targets[n] = n % 4 == 1 ? -100 : (n * 7919) % vocab;
    const Tensor t = Tensor::from_vector(targets, {33});
    check_f32_against_f64(
        {logits}, [&](const auto& in) { return cross_entropy(in[0], t); }, 1e-5);
  }
}

TEST_CASE("f32 norm kernels equal the f64 ones", "[ops]") {
  Generator gen(9);
  for (int64_t width : {6, 1000, 4100}) {
    const Tensor x = Tensor::randn({2, 20, width}, gen) * 3.0 + 0.5;
    const Tensor w = Tensor::rand({width}, gen) + 0.5, b = Tensor::randn({width}, gen);
    check_f32_against_f64(
        {x, w}, [](const auto& in) { return rms_norm(in[0], in[1], 1e-6); }, 1e-5);
    check_f32_against_f64(
        {x, w, b}, [](const auto& in) { return layer_norm(in[0], in[1], in[2], 1e-5); }, 1e-5);
    check_f32_against_f64(
        {x, w}, [](const auto& in) { return group_rms_norm(in[0], 2, 1e-6, in[1]); }, 1e-5);
    check_f32_against_f64(
        {x}, [](const auto& in) { return group_rms_norm(in[0], 2, 1e-6); }, 1e-5);
  }
}

TEST_CASE("bf16 softmax, cross_entropy and norms stay close to f32", "[ops]") {
  Generator gen(4);
  const Tensor x = Tensor::randn({8, 1000}, gen).to(DType::bf16);
  check_close(softmax(x, -1).to(DType::f32), softmax(x.to(DType::f32), -1), 1e-2);
  check_close(rms_norm(x, Tensor::ones({1000}, DType::bf16)).to(DType::f32),
              rms_norm(x.to(DType::f32), Tensor::ones({1000})), 1e-2);
  const Tensor t = Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6, 7, 8}, {8});
  check_close(cross_entropy(x, t), cross_entropy(x.to(DType::f32), t), 1e-3);
}
