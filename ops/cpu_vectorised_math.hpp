// Branch-free f32 forms of exp, expm1, log, log1p and the functions built on them, written as
// plain scalar code that GCC vectorises inside `#pragma omp simd` loops (ops/cpu_vectorised.hpp):
// no calls, no branches (the ternaries become blends), integer work on the bit patterns only.
// GCC does not vectorise std::exp / std::log without -ffast-math, hence these.
//
// The products whose fusion the accuracy relies on are fused explicitly with std::fma, which GCC
// vectorises (vfmadd with -march=native; std::fma sets no errno). Other a * b + c may be fused
// too: GCC 12 contracts them in C++ even with -std=c++20 (its ISO-mode -ffp-contract=off is
// for C); the tests hold the results as compiled, contractions included.
//
// Each function is accurate to a few f32 ulps over the whole f32 range, denormals, +-inf and NaN
// included; tests/test_cpu_vectorised.cpp holds them to 1e-6 relative of the f64 definitions in
// ops/elementwise_math.hpp. The polynomial coefficients are near-minimax fits (Lawson's
// iteratively reweighted least squares over 2000 Chebyshev nodes, in f64); the error bounds
// quoted are of the polynomial alone, before f32 rounding.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#define DSSM_VEC_INLINE [[gnu::always_inline]] inline

namespace dssm::vec {

inline constexpr float kInfinity = std::numeric_limits<float>::infinity();
inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// ln 2 = kLn2Hi + kLn2Lo; kLn2Hi has 16 significant bits, so n * kLn2Hi is exact for |n| < 2^8.
inline constexpr float kLn2Hi = 0x1.62e4p-1f;
inline constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
inline constexpr float kLog2e = 1.44269504088896341f;

// 2^n for integer n in [-126, 127], built from its exponent bits.
DSSM_VEC_INLINE float pow2(int32_t n) {
  return std::bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
}

// c ? a : b, as bit masks. GCC turns a ternary on a float result into a branch where it can sink
// the computation of `a` into it (and then cannot vectorise the loop, the sunk conversions and
// divisions "could trap"); the masks keep both sides unconditional.
DSSM_VEC_INLINE float pick(bool c, float a, float b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(c);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & mask) |
                              (std::bit_cast<uint32_t>(b) & ~mask));
}

// The range reduction of exp and expm1: t = n ln2 + r with n = round(t / ln2) and
// |r| <= ln2 / 2 (plus rounding). n is returned as an integer; t must satisfy |t| < 2^22 ln2.
// Rounding adds and subtracts 1.5 * 2^23, which leaves round-to-nearest(t / ln2) in the float and
// n in the low bits of its pattern.
inline constexpr float kShifter = 0x1.8p23f;
struct Reduced {
  float r;
  int32_t n;
};
DSSM_VEC_INLINE Reduced reduce_ln2(float t) {
  const float shifted = std::fma(t, kLog2e, kShifter);
  const float n = shifted - kShifter;
  const float r = std::fma(-n, kLn2Lo, std::fma(-n, kLn2Hi, t));  // the inner fma is exact
  const auto bits = std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(kShifter);
  return {r, static_cast<int32_t>(bits)};
}

// expm1(r) = r + r^2 q(r) for |r| <= ln2 / 2, q of degree 4: relative error 1.3e-8 (0.1 ulp).
// q's coefficients, highest degree first (also used by exp_nonpositive_flushed and the AVX-512
// forms of ops/cpu_vectorised_unary.hpp).
inline constexpr float kExpm1Q[5] = {0.001388252266f, 0.008366513953f, 0.04166719965f,
                                     0.1666654367f, 0.4999999816f};
DSSM_VEC_INLINE float expm1_reduced(float r) {
  float q = std::fma(r, kExpm1Q[0], kExpm1Q[1]);
  q = std::fma(r, q, kExpm1Q[2]);
  q = std::fma(r, q, kExpm1Q[3]);
  q = std::fma(r, q, kExpm1Q[4]);
  return std::fma(r * r, q, r);
}

// e^x = 2^n e^r, 2^n applied in two halves, 2^(n - n/2) and 2^(n/2), both normal for
// n in [-150, 129]: the first product is exact, the second rounds once, so denormal results are
// right too. Callers clamp x to [-104, 89] first (e^-104 rounds to 0 and e^89 overflows, as they
// should); the clamps keep NaN (a comparison with NaN is false). Within 2 ulps.
DSSM_VEC_INLINE float exp_clamped(float x) {
  const Reduced red = reduce_ln2(x);
  const int32_t half = red.n >> 1;
  return (1.0f + expm1_reduced(red.r)) * pow2(red.n - half) * pow2(half);
}
DSSM_VEC_INLINE float exp(float x) {
  x = x < -104.0f ? -104.0f : x;
  return exp_clamped(x > 89.0f ? 89.0f : x);
}
// e^x for x <= 0 or NaN (one clamp fewer).
DSSM_VEC_INLINE float exp_nonpositive(float x) {
  return exp_clamped(x < -104.0f ? -104.0f : x);
}

// e^x - 1 for x <= 0 (tanh's argument), without the cancellation of exp(x) - 1 near 0:
// 2^n expm1(r) + (2^n - 1), where 2^n - 1 is exact for n >= -24 and the sum cancels at most
// one bit (n = -1). x is clamped at -30, past which the result is -1 in f32.
DSSM_VEC_INLINE float expm1_nonpositive(float x) {
  x = x < -30.0f ? -30.0f : x;
  const Reduced red = reduce_ln2(x);
  const float scale = pow2(red.n);
  return std::fma(scale, expm1_reduced(red.r), scale - 1.0f);
}

// log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: 2 atanh(s) with s = f / (2 + f), |s| <= 0.1716,
// = 2s + s z p(z), z = s^2 <= 0.0295, p of degree 2: relative error 8e-10. f is exact in every
// caller, and s has one rounding from 2 + f and one from the division: within 2 ulps.
DSSM_VEC_INLINE float log1p_reduced(float f) {
  const float s = f / (2.0f + f), z = s * s;
  const float p = std::fma(z, std::fma(z, 0.2987093755f, 0.39977574f), 0.6666677609f);
  return std::fma(s, z * p, 2.0f * s);
}

// log(x): x = 2^k m with m in [sqrt(1/2), sqrt(2)), found by subtracting the bits of sqrt(1/2),
// then log x = k ln2 + log(1 + (m - 1)), m - 1 being exact. Denormals are scaled by 2^23 first
// (a multiply by a picked factor, not a picked product: see pick()). 0 gives -inf, negatives NaN,
// +inf and NaN themselves. Within 2 ulps.
DSSM_VEC_INLINE float log(float x) {
  const float factor = x < 0x1p-126f ? 0x1p23f : 1.0f;
  const auto bits = std::bit_cast<uint32_t>(x * factor);
  const auto offset = bits - std::bit_cast<uint32_t>(0x1.6a09e6p-1f);
  const int32_t k = static_cast<int32_t>(offset) >> 23;  // floor(log2(x factor / sqrt(1/2)))
  const float m = std::bit_cast<float>(bits - (offset & 0xff800000u));
  const int32_t factor_log2 = static_cast<int32_t>(std::bit_cast<uint32_t>(factor) >> 23) - 127;
  const auto e = static_cast<float>(k - factor_log2);
  const float result = std::fma(e, kLn2Hi, std::fma(e, kLn2Lo, log1p_reduced(m - 1.0f)));
  const float zero_or_negative = x == 0.0f ? -kInfinity : kNaN;
  const float special = x <= 0.0f ? zero_or_negative : x;  // NaN and +inf give x
  return pick((x > 0.0f) & (x < kInfinity), result, special);
}

// log(1 + y) for y in [0, 1] (or NaN): below sqrt(2) - 1 directly; above, as ln2 + log(1 + f)
// with f = (y - 1) / 2 (1 + y = 2 (1 + f)), f in [-0.29, 0]. Both f are exact or within half an
// ulp of y - 1, and the sum with ln2 cancels at most one bit. Within 3 ulps.
DSSM_VEC_INLINE float log1p_unit(float y) {
  const bool above = y > 0.41421356f;
  const float f = above ? 0.5f * (y - 1.0f) : y;
  return (above ? kLn2Hi + kLn2Lo : 0.0f) + log1p_reduced(f);
}

// 1/sqrt(x) for x > 0 finite, of `scaled` = x, or 2^24 x for x < 2^-126 (into the normal range).
// The first estimate halves and negates the exponent through the bits, 0x5f376410 - bits / 2
// (the constant fitted here for the least largest error, 3.4%); each Newton step
// y (1.5 - 0.5 x y^2) takes a relative error e to 1.5 e^2: 1.8e-3, 4.6e-6, then 3e-11.
struct ScaledRsqrt {
  float y, scaled;
};
template <int kSteps>
DSSM_VEC_INLINE ScaledRsqrt rsqrt_positive(float x) {
  const float scaled = x * (x < 0x1p-126f ? 0x1p24f : 1.0f);
  float y = std::bit_cast<float>(0x5f376410u - (std::bit_cast<uint32_t>(scaled) >> 1));
  const float half = 0.5f * scaled;
  for (int i = 0; i < kSteps; ++i) y = y * std::fma(-half * y, y, 1.5f);
  return {y, scaled};
}

// GCC vectorises std::sqrt only without errno (-fno-math-errno), hence these two. Within 2 ulps.
// 1 / x gives the specials: +-inf at +-0 (1 / sqrt(-0) = -inf), 0 at inf, NaN at NaN.
DSSM_VEC_INLINE float rsqrt(float x) {
  const float y = rsqrt_positive<3>(x).y * (x < 0x1p-126f ? 0x1p12f : 1.0f);
  const float special = x < 0.0f ? kNaN : 1.0f / x;
  return pick((x > 0.0f) & (x < kInfinity), y, special);
}

// sqrt(x) = x / sqrt(x) after two Newton steps, then one correction s + (x - s^2) / (2 sqrt(x)),
// which squares the error again.
DSSM_VEC_INLINE float sqrt(float x) {
  const ScaledRsqrt r = rsqrt_positive<2>(x);
  const float s = r.scaled * r.y;
  const float corrected =
      std::fma(0.5f * r.y, std::fma(-s, s, r.scaled), s) * (x < 0x1p-126f ? 0x1p-12f : 1.0f);
  const float special = x < 0.0f ? kNaN : x;  // +-0, +inf and NaN give x
  return pick((x > 0.0f) & (x < kInfinity), corrected, special);
}

// e^x for x <= 0 (or NaN) where results below FLT_MIN may be 0 (softmax, cross-entropy: terms of
// a sum >= 1), in fewer operations than exp(): 0 from x < -86.5 on, so that 2^n e^r stays normal
// and 2^n can be applied by adding n to the exponent field of e^r (no product); e^r is the same
// polynomial as 1 + expm1_reduced(r), 1 + r + r^2 q(r), in one Horner chain of 6 FMAs (rounding
// within an ulp). Within 2 ulps.
DSSM_VEC_INLINE float exp_nonpositive_flushed(float x) {
  const bool tiny = x < -86.5f;
  const Reduced red = reduce_ln2(tiny ? -86.5f : x);
  const float r = red.r;
  float p = std::fma(r, kExpm1Q[0], kExpm1Q[1]);
  p = std::fma(r, p, kExpm1Q[2]);
  p = std::fma(r, p, kExpm1Q[3]);
  p = std::fma(r, p, kExpm1Q[4]);
  p = std::fma(r, p, 1.0f);
  p = std::fma(r, p, 1.0f);
  const uint32_t scaled = std::bit_cast<uint32_t>(p) + (static_cast<uint32_t>(red.n) << 23);
  return tiny ? 0.0f : std::bit_cast<float>(scaled);
}

// The logistic function in the form that neither overflows nor cancels: with e = e^-|z| <= 1
// and r = 1 / (1 + e), sigmoid(z) = r for z >= 0 and e r for z < 0, and 1 - sigmoid(z) the
// other one. Tails keep their relative accuracy down to the denormals (silu(-95) = -95 e^-95).
struct Logistic {
  float sigmoid, one_minus;
};
DSSM_VEC_INLINE Logistic logistic(float z) {
  const float e = exp_nonpositive(-std::fabs(z));
  const float r = 1.0f / (1.0f + e), er = e * r;
  const bool negative = z < 0.0f;
  return {negative ? er : r, negative ? r : er};
}

// tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x: no cancellation near 0, and
// 1 from |x| >= 15 on. Within 3 ulps.
DSSM_VEC_INLINE float tanh(float x) {
  const float em = expm1_nonpositive(-2.0f * std::fabs(x));
  return std::copysign(-em / (2.0f + em), x);
}

// gelu's 2u(x) = 2 sqrt(2/pi) (x + 0.044715 x^3) and 2x u'(x) = 2 sqrt(2/pi) x (1 + 3 * 0.044715
// x^2), each as x (a + b x^2) from x2 = x^2: one FMA and one product. 2u has the sign of x.
inline constexpr float kGelu2 = 2 * 0.7978845608028654f;
DSSM_VEC_INLINE float gelu_twice_inner(float x, float x2) {
  return x * std::fma(x2, kGelu2 * 0.044715f, kGelu2);
}
DSSM_VEC_INLINE float gelu_twice_x_inner_dx(float x, float x2) {
  return x * std::fma(x2, kGelu2 * float(3 * 0.044715), kGelu2);
}

}  // namespace dssm::vec
