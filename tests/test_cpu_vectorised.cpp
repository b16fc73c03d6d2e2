// The vectorised f32 CPU kernels (ops/cpu_vectorised*.hpp) against
// the scalar definitions of ops/elementwise_math.hpp evaluated in f64 on the same f32 inputs: the
// unary ops forward and backward (on random inputs and on a sweep of the whole f32 range), and
// the f32 kernels of softmax, log_softmax, cross_entropy and the norms against their f64 path.
// The bf16 unary ops are held to faithful rounding (one of the two bf16 values around the exact
// f64 result) on every bf16 input, forward and backward.
#include <catch2/catch.hpp>

#include <algorithm>
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

namespace {

// The exact values of the unary ops and of their derivatives, in f64 (gelu with sigmoid(2u) for
// 0.5 (1 + tanh(u)), as gelu_f64(); softplus as max(x, 0) + log1p(e^-|x|), log(1 + e^x) without
// overflow). The derivatives are of x or of y = f(x), as the op saves it (derivative_uses_output).
double exact_forward(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::rsqrt:
      return 1 / std::sqrt(x);
    case UnaryOp::sigmoid:
      return 1 / (1 + std::exp(-x));
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::silu:
      return x / (1 + std::exp(-x));
    case UnaryOp::gelu:
      return gelu_f64(x);
    case UnaryOp::softplus:
      return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
    default:
      return definition_forward(op, x);
  }
}
double exact_derivative(UnaryOp op, double s) {
  const double sig = 1 / (1 + std::exp(-s));
  switch (op) {
    case UnaryOp::exp:
      return s;  // of y
    case UnaryOp::log:
      return 1 / s;
    case UnaryOp::sqrt:
      return 0.5 / s;  // of y
    case UnaryOp::rsqrt:
      return -0.5 * s * s * s;  // of y
    case UnaryOp::sigmoid:
      return s * (1 - s);  // of y
    case UnaryOp::tanh:
      return 1 - s * s;  // of y
    case UnaryOp::silu:
      return sig * (1 + s * (1 - sig));
    case UnaryOp::gelu:
      return gelu_derivative_f64(s);
    case UnaryOp::softplus:
      return sig;
    default:
      return definition_derivative(op, s, s);
  }
}

// The bf16 value next to the bf16 value r in the direction of v.
double bf16_step_toward(float r, double v) {
  const uint32_t bits = std::bit_cast<uint32_t>(r) >> 16;
  const bool up = v > r;
  uint32_t next = 0;
  if ((bits & 0x7fffu) == 0) {
    next = up ? 0x0001u : 0x8001u;  // from +-0 to the smallest denormal of v's sign
  } else {
    next = ((bits >> 15) == 0) == up ? bits + 1 : bits - 1;  // away from 0 or toward it
  }
  return std::bit_cast<float>(next << 16);
}

// Whether the bf16 result r is the exact value v faithfully rounded: v itself, or v lies strictly
// between r and the next bf16 value toward v (r is one of the two bf16 values around v). Where v
// rounds to 0 or to an infinity (at most half the smallest denormal, 2^-134, or at least the
// largest finite value and half an ulp), and NaN, r must be exactly that.
bool faithful(float r, double v) {
  if (std::isnan(v)) return std::isnan(r);
  if (std::abs(v) >= 0x1.ffp127) return r == std::copysign(kInf, v);
  if (std::abs(v) <= 0x1p-134) return r == 0.0f;
  if (std::isnan(r)) return false;
  const double step = bf16_step_toward(r, v);
  return r == v || (std::min<double>(r, step) < v && v < std::max<double>(r, step));
}

// bf16 g of normal values, one in 7 scaled by 2^-110 so that some products g f' are denormal in
// f32 (and must not be flushed to 0): a fresh seed each run, printed on failure.
Tensor random_bf16_gradient(int64_t n, uint32_t seed) {
  Generator gen(seed);
  std::vector<float> g = Tensor::randn({n}, gen).to_vector<float>();
  for (int64_t i = 0; i < n; i += 7) g[i] *= 0x1p-110f;
  return f32_tensor(g).to(DType::bf16);
}

// op forward on the bf16 values x and backward (through autograd, dx = g f'(x or y)), each result
// against the exact value (in f64, from the same bf16 x, g and y) faithfully rounded; every
// `step`-th element.
void check_bf16_faithful(const UnaryCase& c, const Tensor& x, const Tensor& g, size_t step = 1) {
  const Tensor leaf = x.detach().set_requires_grad(true);
  const Tensor y = unary(c.op, leaf);
  y.backward(g);
  const auto xv = f32_values(x.to(DType::f32)), yv = f32_values(y.to(DType::f32));
  const auto gv = f32_values(g.to(DType::f32)), dx = f32_values(leaf.grad().to(DType::f32));
  const bool from_y = derivative_uses_output(c.op);
  for (size_t i = 0; i < xv.size(); i += step) {
    const double want = exact_forward(c.op, xv[i]);
    INFO(c.name << "(" << xv[i] << "): got " << yv[i] << ", exact " << want);
    CHECK(faithful(yv[i], want));
    // The f32 backward of the arithmetic derivatives forms f'(s) first: where that leaves the f32
    // range (1 / x at denormal x, y^3 beyond 2^127), the product does too, whatever g.
    const double derivative = exact_derivative(c.op, from_y ? yv[i] : xv[i]);
    if (std::isinf(static_cast<float>(derivative)) && !std::isinf(derivative)) continue;
    const double want_dx = gv[i] * derivative;
    INFO("backward, g = " << gv[i] << ": got " << dx[i] << ", exact " << want_dx);
    CHECK(faithful(dx[i], want_dx));
  }
}

// Every bf16 bit pattern in order.
std::vector<float> all_bf16_values() {
  std::vector<float> all;
  for (uint32_t bits = 0; bits < 65536; ++bits) all.push_back(std::bit_cast<float>(bits << 16));
  return all;
}

}  // namespace

TEST_CASE("faithful() accepts exactly the two bf16 values around the exact one", "[ops]") {
  const double v = 1.0 + 0x1p-9;  // between 1 and 1 + 2^-7, nearer 1
  CHECK(faithful(1.0f, v));
  CHECK(faithful(1.0f + 0x1p-7f, v));
  CHECK_FALSE(faithful(1.0f - 0x1p-8f, v));
  CHECK_FALSE(faithful(1.0f + 0x1p-6f, v));
  CHECK(faithful(1.0f, 1.0));  // representable: only itself
  CHECK_FALSE(faithful(1.0f + 0x1p-7f, 1.0));
  CHECK_FALSE(faithful(1.0f - 0x1p-8f, 1.0));
  CHECK(faithful(-2.0f, -2.0 + 0x1p-12));  // below 2 in magnitude the ulp halves
  CHECK(faithful(-2.0f + 0x1p-7f, -2.0 + 0x1p-12));
  CHECK_FALSE(faithful(-2.0f - 0x1p-6f, -2.0 + 0x1p-12));
  CHECK(faithful(0x1p-133f, 0x1.8p-134));  // denormals
  CHECK(faithful(0.0f, 0x1.8p-134));
  CHECK_FALSE(faithful(0.0f, 0x1.8p-133));
  CHECK_FALSE(faithful(0x1p-133f, 0x1p-134));  // rounds to 0: exactly 0
  CHECK(faithful(kInf, 1e39));
  CHECK_FALSE(faithful(0x1.fep127f, 1e39));
  CHECK(faithful(0x1.fep127f, 0x1.fe8p127));
  CHECK(faithful(kNaN, std::nan("")));
  CHECK_FALSE(faithful(0.0f, std::nan("")));
}

// bf16 ops are faithfully rounded: on every bf16 value (in bit order, split over the threads),
// forward and backward at a random g.
TEST_CASE("bf16 unary ops are faithfully rounded on every bf16 value", "[ops]") {
  const Tensor x = f32_tensor(all_bf16_values()).to(DType::bf16);
  const uint32_t seed = std::random_device{}();
  INFO("g seed " << seed);
  const Tensor g = random_bf16_gradient(x.numel(), seed);
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      check_bf16_faithful(c, x, g);
    }
  }
}

// In bit order a vector of 32 inputs that straddles the end of a form's range takes the table,
// so the values just inside the ends would never reach the lanes: here each bf16 value fills a
// vector of 32 (the first of each checked), at a g none of which is scaled to a denormal product
// (which would send the vector to the table too).
TEST_CASE("bf16 unary ops are faithfully rounded on vectors of one value", "[ops]") {
  std::vector<float> copies;
  for (float v : all_bf16_values()) copies.insert(copies.end(), 32, v);
  const Tensor x = f32_tensor(copies).to(DType::bf16);
  const uint32_t seed = std::random_device{}();
  INFO("g seed " << seed);
  Generator gen(seed);
  const Tensor g = Tensor::randn({x.numel()}, gen).to(DType::bf16);
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      check_bf16_faithful(c, x, g, 32);
    }
  }
}

// The same on runs of the bf16 values in a random order, of lengths that are no multiple of any
// vector width, starting at odd elements: the vector loops' partial vectors, and vectors where
// inputs outside a form's range sit among others.
TEST_CASE("bf16 unary ops are faithfully rounded on odd lengths and offsets", "[ops]") {
  std::vector<float> all = all_bf16_values();
  const uint32_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  const Tensor x = f32_tensor(all).to(DType::bf16);
  const Tensor g = random_bf16_gradient(x.numel(), seed + 1);
  for (const UnaryCase& c : kForwardCases) {
    SECTION(c.name) {
      for (auto [offset, length] : {std::pair<int64_t, int64_t>{1, 31}, {3, 999}, {5, 65519}}) {
        INFO("offset " << offset << ", length " << length);
        check_bf16_faithful(c, x.narrow(0, offset, length), g.narrow(0, offset, length));
      }
    }
  }
}

#ifdef __AVX512BW__
// Where AVX-512 is compiled in, bf16 sqrt and rsqrt compute from 256 offsets instead of looking
// up the table: the offsets must have passed their check against the table (else they are not
// used, and the tests above would only have tested the table).
TEST_CASE("bf16 sqrt and rsqrt compute where AVX-512 allows, not look up", "[ops]") {
  CHECK(vec::bf16_half_exponent_offsets<UnaryOp::sqrt>().exact);
  CHECK(vec::bf16_half_exponent_offsets<UnaryOp::rsqrt>().exact);
}
#endif

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
