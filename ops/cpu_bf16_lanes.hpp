// bf16 unary ops computed on AVX-512 lanes (ops/cpu_vectorised_unary.hpp's bf16 kernels for exp,
// log, sigmoid, tanh, silu, gelu, softplus forward and silu, gelu, softplus backward). The
// contract is faithful rounding: each result is one of the two bf16 values next to the exact
// one (an error below one bf16 ulp), and specials are exact (NaN, infinities, zeros, saturation).
// Rounding an f32 value whose relative error is below half a bf16 ulp (2^-9) to the nearest bf16
// gives that, so the f32 forms here are lean: a degree-3 polynomial for 2^f (error 1e-4),
// vrcp14ps (2^-14) for 1 / d, log and tanh from polynomials without tables, where the f32 kernels
// need 1e-7; all within 0.3 of that half ulp on every bf16 input, but gelu, whose 2^f is
// quadratic (1.7e-3: within 0.9 of it). Where a form cancels (silu' and gelu' cross zero), it is
// as accurate as the result needs there. 32 bf16 values are read as one vector and widened in
// two halves of 16 f32 lanes (the even and the odd elements, one operation each); the results are
// rounded by vcvtne2ps2bf16 and put back in order by one vpermw. The loops take 2 such vectors a
// step, their 4 halves computed on together (Lanes). vcvtne2ps2bf16 flushes denormals to 0, so
// every form has a range of inputs whose results stay normal (or exactly 0, 1, inf); a vector of 32
// with an input outside takes the f32 kernel's result rounded (`scalar`), as does the last n % 32.
#pragma once

#if defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512DQ__)
#include <immintrin.h>

#include <array>
#include <bit>
#include <cstdint>

#include "ops/cpu_f32_lanes.hpp"
#include "ops/cpu_vectorised.hpp"

namespace dssm::vec {

template <UnaryOp op>
inline constexpr bool has_bf16_forward_lanes =
    op == UnaryOp::exp || op == UnaryOp::log || op == UnaryOp::sigmoid || op == UnaryOp::tanh ||
    op == UnaryOp::silu || op == UnaryOp::gelu || op == UnaryOp::softplus;
template <UnaryOp op>
inline constexpr bool has_bf16_derivative_lanes =
    op == UnaryOp::silu || op == UnaryOp::gelu || op == UnaryOp::softplus;

// 32 bf16 values as f32: the even elements are the low halves of the 32-bit words (shifted up),
// the odd ones the high halves (the low half cleared).
struct Bf16Halves {
  __m512 even, odd;
};
inline Bf16Halves widen(__m512i bits) {
  return {_mm512_castsi512_ps(_mm512_slli_epi32(bits, 16)),
          _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(-65536)))};
}

// The word order that interleaves vcvtne2ps2bf16's halves again: element 2j is word j (from the
// even lanes), element 2j + 1 is word 16 + j (the odd lanes).
inline constexpr std::array<uint16_t, 32> kInterleave = [] {
  std::array<uint16_t, 32> order{};
  for (uint16_t k = 0; k < 32; ++k) order[k] = static_cast<uint16_t>(k / 2 + (k % 2) * 16);
  return order;
}();

// The two halves rounded to bf16 (to nearest even; denormals become 0) and put back in order.
inline __m512i narrow(__m512 even, __m512 odd) {
  const auto halves = std::bit_cast<__m512i>(_mm512_cvtne2ps_pbh(odd, even));
  return _mm512_permutexvar_epi16(_mm512_loadu_si512(kInterleave.data()), halves);
}

// The inputs a form covers: bits (of |x| where `symmetric`) in [low, high], where its results
// are normal or exactly 0, 1 or inf. 2^-120 (0x0380) and up for the ops that are about x or x / 2
// near 0; 87 (0x42ae) for the ones with e^+-x, whose results stay above 2^-126 there. silu's
// derivative form has e^-x (1 + x) in f32, beyond its range below -84.5: 84 (0x42a8).
struct LaneInputs {
  uint16_t low, high;
  bool symmetric;
};
template <UnaryOp op, bool derivative>
constexpr LaneInputs lane_inputs() {
  if constexpr (derivative && op == UnaryOp::silu) return {0x0380, 0x42a8, true};
  if constexpr (op == UnaryOp::exp || op == UnaryOp::sigmoid || op == UnaryOp::softplus) {
    return {0, 0x42ae, true};
  }
  if constexpr (op == UnaryOp::silu) return {0x0380, 0x42ae, true};
  if constexpr (op == UnaryOp::tanh) return {0x0380, 0x7f7f, true};  // finite
  if constexpr (op == UnaryOp::gelu) return {0x0380, 0x4118, true};  // 9.5: |2u| <= 77
  return {0x0080, 0x7f3f, false};  // log: positive normal, below 1.5 2^127
}
// The lanes of 32 bf16 values outside the inputs of op's forward or derivative form: bits - low
// > high - low, unsigned.
template <UnaryOp op, bool derivative = false>
inline __mmask32 outside_inputs(__m512i bits) {
  constexpr LaneInputs inputs = lane_inputs<op, derivative>();
  const __m512i b = inputs.symmetric ? _mm512_and_si512(bits, _mm512_set1_epi16(0x7fff)) : bits;
  return _mm512_cmpgt_epu16_mask(_mm512_sub_epi16(b, _mm512_set1_epi16(inputs.low)),
                                 _mm512_set1_epi16(static_cast<int16_t>(inputs.high - inputs.low)));
}

// N vectors of 16 f32 lanes, computed on together: each operation of the forms below is issued
// for all N before the next one, so that N independent chains of dependent operations are in
// flight (a form is a chain of 15-25; one vector alone leaves the pipes idle for its latency). A
// float converts to N copies of itself.
template <int N>
struct Lanes {
  __m512 v[N];
  // All lanes, for the masked forms of the intrinsics below: through the lambdas GCC 12 warns
  // that the unmasked forms' undefined source (_mm512_undefined_ps) is uninitialized.
  static constexpr __mmask16 kAll = 0xffff;

  Lanes() = default;
  Lanes(float c) {  // implicit: the forms write their constants as floats
    for (__m512& w : v) w = _mm512_set1_ps(c);
  }
  // f applied to the N vectors of each argument in turn.
  template <typename F, typename... Args>
  DSSM_VEC_INLINE static Lanes each(F f, const Args&... args) {
    Lanes r;
    for (int k = 0; k < N; ++k) r.v[k] = f(args.v[k]...);
    return r;
  }

  DSSM_VEC_INLINE friend Lanes operator+(const Lanes& a, const Lanes& b) {
    return each([](__m512 p, __m512 q) { return _mm512_add_ps(p, q); }, a, b);
  }
  DSSM_VEC_INLINE friend Lanes operator-(const Lanes& a, const Lanes& b) {
    return each([](__m512 p, __m512 q) { return _mm512_sub_ps(p, q); }, a, b);
  }
  DSSM_VEC_INLINE friend Lanes operator*(const Lanes& a, const Lanes& b) {
    return each([](__m512 p, __m512 q) { return _mm512_mul_ps(p, q); }, a, b);
  }
  // a b + c, rounded once.
  DSSM_VEC_INLINE friend Lanes fmadd(const Lanes& a, const Lanes& b, const Lanes& c) {
    return each([](__m512 p, __m512 q, __m512 r) { return _mm512_fmadd_ps(p, q, r); }, a, b, c);
  }
  DSSM_VEC_INLINE friend Lanes maximum(const Lanes& a, const Lanes& b) {
    return each([](__m512 p, __m512 q) { return _mm512_maskz_max_ps(kAll, p, q); }, a, b);
  }
  DSSM_VEC_INLINE friend Lanes minimum(const Lanes& a, const Lanes& b) {
    return each([](__m512 p, __m512 q) { return _mm512_maskz_min_ps(kAll, p, q); }, a, b);
  }
  DSSM_VEC_INLINE friend Lanes negative_abs(const Lanes& a) {
    return each([](__m512 p) { return negative_abs(p); }, a);
  }
  DSSM_VEC_INLINE friend Lanes reciprocal(const Lanes& a) {  // vrcp14ps: within 2^-14
    return each([](__m512 p) { return _mm512_maskz_rcp14_ps(kAll, p); }, a);
  }
  DSSM_VEC_INLINE friend Lanes fraction(const Lanes& t) {  // t - floor(t), exact (vreduceps)
    return each(
        [](__m512 p) {
          return _mm512_maskz_reduce_ps(kAll, p, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        },
        t);
  }
  // a 2^floor(t) (vscalefps).
  DSSM_VEC_INLINE friend Lanes times_exp2_floor(const Lanes& a, const Lanes& t) {
    return each([](__m512 p, __m512 q) { return _mm512_maskz_scalef_ps(kAll, p, q); }, a, t);
  }
  DSSM_VEC_INLINE friend Lanes mantissa(const Lanes& x) {  // in [0.75, 1.5) (vgetmantps)
    return each(
        [](__m512 p) {
          return _mm512_maskz_getmant_ps(kAll, p, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_zero);
        },
        x);
  }
  DSSM_VEC_INLINE friend Lanes exponent(const Lanes& x) {  // floor(log2 |x|) (vgetexpps)
    return each([](__m512 p) { return _mm512_maskz_getexp_ps(kAll, p); }, x);
  }
};

// 2^t: t = n + f with n = floor(t) and f in [0, 1) (vreduceps, exact), 2^f by a cubic, then
// times 2^n by vscalefps (inf or 0 where that leaves the range). For the forward forms the cubic
// is fitted at Chebyshev nodes (relative error 1.0e-4); for silu' and gelu' it minimises the
// largest relative error weighted 60 times on f in [0.70, 0.94], where f falls at the bf16 inputs
// next to their zeros (Lawson's iteration on a grid; 5.7e-6 there, 3.4e-4 elsewhere). The
// quadratic minimises the largest relative error (Lawson's iteration, 1.73e-3, 0.88 of 2^-9).
template <int N>
DSSM_VEC_INLINE Lanes<N> exp2_cubic(const Lanes<N>& t, float c0, float c1, float c2, float c3) {
  const Lanes<N> f = fraction(t);
  return times_exp2_floor(fmadd(f, fmadd(f, fmadd(f, c3, c2), c1), c0), t);
}
template <int N>
DSSM_VEC_INLINE Lanes<N> exp2_quadratic(const Lanes<N>& t) {
  const Lanes<N> f = fraction(t);
  return times_exp2_floor(fmadd(f, fmadd(f, 0.3371888697f, 0.657638371f), 1.001724005f), t);
}
template <int N>
DSSM_VEC_INLINE Lanes<N> exp2_lean(const Lanes<N>& t) {
  return exp2_cubic(t, 0.9999002814f, 0.6963247657f, 0.2246931493f, 0.07896725833f);
}
template <int N>
DSSM_VEC_INLINE Lanes<N> exp2_near_zeros(const Lanes<N>& t) {
  return exp2_cubic(t, 0.9996572733f, 0.7008362412f, 0.2146433443f, 0.0847755f);
}

// 1 / (1 + 2^t) within 1.6e-4 (the polynomial and vrcp14ps): sigmoid(x) at t = -x log2(e).
template <int N>
DSSM_VEC_INLINE Lanes<N> logistic_lean(const Lanes<N>& t) {
  return reciprocal(1.0f + exp2_lean(t));
}

// log(x) for positive normal x below 1.5 2^127: x = 2^k m with m in [0.75, 1.5) (vgetmantps), k
// the exponent of 4x / 3 (vgetexpps), and log(m) = f + f^2 p(f), f = m - 1, p of degree 3 fitted
// at Chebyshev nodes (relative error 1.3e-4).
template <int N>
DSSM_VEC_INLINE Lanes<N> log_lanes(const Lanes<N>& x) {
  const Lanes<N> k = exponent(x * (4.0f / 3.0f)), f = mantissa(x) - 1.0f;
  const Lanes<N> p =
      fmadd(f, fmadd(f, fmadd(f, 0.1466150284f, -0.2584685981f), 0.3365969062f), -0.4999370575f);
  return fmadd(k, 0.693147180559945309f, fmadd(f * f, p, f));
}

// tanh(x) = x p(x^2) / q(x^2) for |x| <= 4.5, p and q quadratic (q(0) = 1), interpolating at
// Chebyshev nodes; beyond, x is clamped: tanh(4.5) is within 2.5e-4 of 1 (relative error 2.9e-4
// in all).
template <int N>
DSSM_VEC_INLINE Lanes<N> tanh_lanes(const Lanes<N>& x) {
  const Lanes<N> clamped = maximum(minimum(x, 4.5f), -4.5f), y = clamped * clamped;
  const Lanes<N> p = fmadd(y, fmadd(y, 0.0006440927973f, 0.1010030359f), 0.9997062683f);
  const Lanes<N> q = fmadd(y, fmadd(y, 0.01247817744f, 0.43347615f), 1.0f);
  return clamped * p * reciprocal(q);
}

// gelu's -2u log2(e) = x (a + b x^2), a and b gelu_twice_inner()'s times -log2(e).
template <int N>
DSSM_VEC_INLINE Lanes<N> gelu_exponent(const Lanes<N>& x, const Lanes<N>& x2) {
  return x * fmadd(x2, -kGelu2 * 0.044715f * kLog2e, -kGelu2 * kLog2e);
}

// softplus(x) = max(x, 0) + log1p(e), e = e^-|x| in (0, 1]; log1p(e) = e p(e), p fitted at
// Chebyshev nodes (relative error 4.4e-4).
template <int N>
DSSM_VEC_INLINE Lanes<N> softplus_lean(const Lanes<N>& x) {
  const Lanes<N> e = exp2_lean(negative_abs(x) * kLog2e);
  const Lanes<N> p =
      fmadd(e, fmadd(e, fmadd(e, -0.07323740423f, 0.2523185909f), -0.4857423604f), 0.9995653629f);
  return fmadd(e, p, maximum(x, 0.0f));
}

// op(x) on N x 16 lanes of covered inputs, within half a bf16 ulp.
template <UnaryOp op, int N>
DSSM_VEC_INLINE Lanes<N> bf16_forward_form(const Lanes<N>& x) {
  if constexpr (op == UnaryOp::exp) {
    return exp2_lean(x * kLog2e);
  } else if constexpr (op == UnaryOp::log) {
    return log_lanes(x);
  } else if constexpr (op == UnaryOp::sigmoid) {
    return logistic_lean(x * -kLog2e);
  } else if constexpr (op == UnaryOp::silu) {
    return x * logistic_lean(x * -kLog2e);
  } else if constexpr (op == UnaryOp::tanh) {
    return tanh_lanes(x);
  } else if constexpr (op == UnaryOp::gelu) {
    // x sig(2u) = x / (1 + e): e's relative error (1.73e-3 from the quadratic) is damped by
    // e / (1 + e), with vrcp14ps's 6e-5 within 1.75e-3 of the result (0.9 of 2^-9).
    return x * reciprocal(1.0f + exp2_quadratic(gelu_exponent(x, x * x)));
  } else {
    static_assert(op == UnaryOp::softplus);
    return softplus_lean(x);
  }
}

// op'(x) on N x 16 lanes of covered inputs, within half a bf16 ulp. silu' and gelu' cross zero
// (at -1.28 and -0.75) and are written as s^2 (d + w e) with e = 2^t, d = 1 + e, s = 1 / d: s's
// error (vrcp14ps, 2^-14) is not amplified there, only e's, by |w e / (d + w e)| (about 50 at the
// worst bf16 input), so e is exp2_near_zeros(). Largest relative errors on bf16 inputs 4.5e-4
// (silu', at -1.28125) and 4.4e-4 (gelu', at -0.54), 0.23 of 2^-9; with exp2_lean(), 4.9e-3 and
// 3.8e-3 next to the zeros. The previous form s (1 + w e s) amplified s's error too: it needed a
// degree-4 2^f and a Newton step on the reciprocal. s (s q), not s^2 q: s^2 underflows for large
// e.
template <UnaryOp op, int N>
DSSM_VEC_INLINE Lanes<N> bf16_derivative_form(const Lanes<N>& x) {
  if constexpr (op == UnaryOp::softplus) {
    return logistic_lean(x * -kLog2e);  // sigmoid(x)
  } else if constexpr (op == UnaryOp::silu) {
    // silu' = s (1 + x (1 - s)) = s^2 (d + x e), sigmoid(x) = s = 1 / d, d = 1 + e, e = e^-x.
    const Lanes<N> e = exp2_near_zeros(x * -kLog2e), d = 1.0f + e, s = reciprocal(d);
    return s * (s * fmadd(x, e, d));
  } else {
    static_assert(op == UnaryOp::gelu);
    // gelu' = s (1 + 2 x u' (1 - s)) = s^2 (d + 2 x u' e), sigmoid(2u) = s = 1 / d, d = 1 + e.
    const Lanes<N> x2 = x * x, e = exp2_near_zeros(gelu_exponent(x, x2)), d = 1.0f + e;
    const Lanes<N> s = reciprocal(d);
    const Lanes<N> twice_x_du = x * fmadd(x2, kGelu2 * float(3 * 0.044715), kGelu2);
    return s * (s * fmadd(twice_x_du, e, d));
  }
}

// y = op(x) on the `vectors` x 32 elements from i; where one of them is outside the form's range,
// vector by vector, `scalar(k)` writing the elements of a vector with an input outside.
template <UnaryOp op, int vectors, typename Scalar>
DSSM_VEC_INLINE void bf16_forward_step(const bf16* x, bf16* y, int64_t i, Scalar& scalar) {
  __m512i bits[vectors];
  __mmask32 outside = 0;
  for (int v = 0; v < vectors; ++v) {
    bits[v] = _mm512_loadu_si512(x + i + 32 * v);
    outside |= outside_inputs<op>(bits[v]);
  }
  if (outside) {
    if constexpr (vectors == 1) {
      for (int64_t k = i; k < i + 32; ++k) scalar(k);
    } else {
      for (int v = 0; v < vectors; ++v) bf16_forward_step<op, 1>(x, y, i + 32 * v, scalar);
    }
    return;
  }
  Lanes<2 * vectors> in;  // the even and the odd halves of each vector
  for (int v = 0; v < vectors; ++v) {
    const Bf16Halves h = widen(bits[v]);
    in.v[2 * v] = h.even;
    in.v[2 * v + 1] = h.odd;
  }
  const Lanes<2 * vectors> out = bf16_forward_form<op>(in);
  for (int v = 0; v < vectors; ++v) {
    _mm512_storeu_si512(y + i + 32 * v, narrow(out.v[2 * v], out.v[2 * v + 1]));
  }
}

// dx = g op'(x) as bf16_forward_step(); also where a product is denormal in f32 (which
// vcvtne2ps2bf16 would flush to 0).
template <UnaryOp op, int vectors, typename Scalar>
DSSM_VEC_INLINE void bf16_backward_step(const bf16* g, const bf16* x, bf16* dx, int64_t i,
                                        Scalar& scalar) {
  constexpr int kDenormal = 0x20;   // vfpclassps's category
  Lanes<2 * vectors> in, gradient;  // the even and the odd halves of each vector
  __mmask32 outside = 0;
  for (int v = 0; v < vectors; ++v) {
    const __m512i bits = _mm512_loadu_si512(x + i + 32 * v);
    const Bf16Halves h = widen(bits), gh = widen(_mm512_loadu_si512(g + i + 32 * v));
    in.v[2 * v] = h.even;
    in.v[2 * v + 1] = h.odd;
    gradient.v[2 * v] = gh.even;
    gradient.v[2 * v + 1] = gh.odd;
    outside |= outside_inputs<op, true>(bits);
  }
  const Lanes<2 * vectors> out = gradient * bf16_derivative_form<op>(in);
  for (int k = 0; k < 2 * vectors; ++k) outside |= _mm512_fpclass_ps_mask(out.v[k], kDenormal);
  if (outside) {
    if constexpr (vectors == 1) {
      for (int64_t k = i; k < i + 32; ++k) scalar(k);
    } else {
      for (int v = 0; v < vectors; ++v) bf16_backward_step<op, 1>(g, x, dx, i + 32 * v, scalar);
    }
    return;
  }
  for (int v = 0; v < vectors; ++v) {
    _mm512_storeu_si512(dx + i + 32 * v, narrow(out.v[2 * v], out.v[2 * v + 1]));
  }
}

// Vectors of 32 a step in the loops below (their 4 halves as one Lanes<4>): 4 chains in flight
// were the fastest in L1 (gelu 0.104 ns per element, softplus 0.103, gelu' 0.159; 8: 0.103,
// 0.107, 0.171; each half alone: 0.113, 0.124, 0.191).
inline constexpr int kForwardVectors = 2, kBackwardVectors = 2;

// y = op(x) on [begin, end); `scalar(i)` writes element i where a vector of 32 has an input
// outside the form's range, and the last (end - begin) % 32.
template <UnaryOp op, typename Scalar>
void bf16_lanes_forward(const bf16* x, bf16* y, int64_t begin, int64_t end, Scalar scalar) {
  int64_t i = begin;
  for (; i + 32 * kForwardVectors <= end; i += 32 * kForwardVectors) {
    bf16_forward_step<op, kForwardVectors>(x, y, i, scalar);
  }
  for (; i + 32 <= end; i += 32) bf16_forward_step<op, 1>(x, y, i, scalar);
  for (; i < end; ++i) scalar(i);
}

// dx = g op'(x) on [begin, end) as bf16_lanes_forward().
template <UnaryOp op, typename Scalar>
void bf16_lanes_backward(const bf16* g, const bf16* x, bf16* dx, int64_t begin, int64_t end,
                         Scalar scalar) {
  int64_t i = begin;
  for (; i + 32 * kBackwardVectors <= end; i += 32 * kBackwardVectors) {
    bf16_backward_step<op, kBackwardVectors>(g, x, dx, i, scalar);
  }
  for (; i + 32 <= end; i += 32) bf16_backward_step<op, 1>(g, x, dx, i, scalar);
  for (; i < end; ++i) scalar(i);
}

}  // namespace dssm::vec
#endif
