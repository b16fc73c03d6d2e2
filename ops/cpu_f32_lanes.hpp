// f32 softplus and gelu forward and gelu backward on 16 lanes with AVX-512 intrinsics
// (ops/unary.cpp's CPU kernels, through unary_forward / unary_backward of
// ops/cpu_vectorised_unary.hpp): the forms that GCC vectorises from ops/cpu_vectorised.hpp spend
// their time in exp's two-half scaling, a division and (softplus) a second polynomial; here e^-|z|
// comes from the table exp of ops/cpu_exp_sum.hpp, 1 / (1 + e) from vrcp14ps and a Newton step, and
// log(1 + e) from a 32-entry table of logarithms. Lanes outside the range these cover (|z| > 86,
// where e^-|z| would leave the normal range; NaN) are recomputed by the scalar-vectorised form, as
// is the n % 16 tail. tests/test_cpu_vectorised.cpp holds them to the same tolerance as the other
// forms.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "ops/cpu_exp_sum.hpp"
#include "ops/cpu_vectorised.hpp"

namespace dssm::vec {

template <UnaryOp op>
inline constexpr bool has_f32_forward_lanes = op == UnaryOp::softplus || op == UnaryOp::gelu;
template <UnaryOp op>
inline constexpr bool has_f32_derivative_lanes = op == UnaryOp::gelu;

// 16 results, and the lanes that the scalar-vectorised form must redo.
struct F32Lanes {
  __m512 value;
  __mmask16 redo;
};

// x with its sign bit set: -|x|.
inline __m512 negative_abs(__m512 x) {
  return _mm512_or_ps(x, _mm512_set1_ps(-0.0f));
}
// The lanes where -|z| is below -86 or NaN: there e^-|z| would leave exp_table_lanes()'s range
// (its result the normal range).
inline __mmask16 outside_exp_range(__m512 negative_abs_z) {
  return _mm512_cmp_ps_mask(negative_abs_z, _mm512_set1_ps(-86.0f), _CMP_NGE_UQ);
}

// 1 / d within 2^-28 relative: the 14-bit estimate and one Newton step.
inline __m512 reciprocal_lanes(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

// For u in [1, 2) with mantissa bits j = 0..31 on top: c_j = 1 for j = 0, else 1 + (j + 1/2) / 32;
// inverse[j] = 1 / c_j rounded to f32 and log_c[j] = -log(inverse[j]) (f64, rounded), so that
// log u = log_c[j] + log1p(u inverse[j] - 1) whatever inverse's rounding, with
// u inverse[j] - 1 in [-1/64, 1/32].
struct LogCentres {
  alignas(64) float inverse[32];
  alignas(64) float log_c[32];
};
inline const LogCentres& log_centres() {
  static const LogCentres table = [] {
    LogCentres t{};
    for (int j = 0; j < 32; ++j) {
      t.inverse[j] = static_cast<float>(1.0 / (j == 0 ? 1.0 : 1.0 + (j + 0.5) / 32));
      t.log_c[j] = static_cast<float>(-std::log(static_cast<double>(t.inverse[j])));
    }
    return t;
  }();
  return table;
}

// log(1 + e) for e in (0, 1]. u = 1 + e (e capped below 1 so that u < 2: log1p(1) is then 3e-8
// low, 0.4 ulp) rounds away c = e - (u - 1) (exact, as u >= e), added back as c / u, here
// c inverse[j] (off by c f, f < 1/32: below 2^-29 relative). log1p(f) = f + f^2 p(f), p of
// degree 2 fitted on [-1/64, 1/32] (relative error 8e-9).
inline __m512 log1p_unit_lanes(__m512 e) {
  const LogCentres& table = log_centres();
  const __m512 u =
      _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_min_ps(e, _mm512_set1_ps(0x1.fffffcp-1f)));
  const __m512 c = _mm512_sub_ps(e, _mm512_sub_ps(u, _mm512_set1_ps(1.0f)));
  const __m512i j = _mm512_srli_epi32(_mm512_castps_si512(u), 18);  // low 5 bits pick the entry
  const __m512 inverse =
      _mm512_permutex2var_ps(_mm512_load_ps(table.inverse), j, _mm512_load_ps(table.inverse + 16));
  const __m512 log_c =
      _mm512_permutex2var_ps(_mm512_load_ps(table.log_c), j, _mm512_load_ps(table.log_c + 16));
  const __m512 f = _mm512_fmsub_ps(u, inverse, _mm512_set1_ps(1.0f));
  __m512 p = _mm512_fmadd_ps(f, _mm512_set1_ps(-0.2439470841f), _mm512_set1_ps(0.3333659738f));
  p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(-0.5000012295f));
  const __m512 log1p_f = _mm512_fmadd_ps(_mm512_mul_ps(f, f), p, f);
  return _mm512_fmadd_ps(c, inverse, _mm512_add_ps(log_c, log1p_f));
}

// softplus(x) = max(x, 0) + log1p(e^-|x|), as unary_forward.
inline F32Lanes softplus_lanes(__m512 x) {
  const __m512 t = negative_abs(x);
  const __m512 e = exp_table_lanes(t, exp2_table());
  const __m512 value = _mm512_add_ps(_mm512_max_ps(x, _mm512_setzero_ps()), log1p_unit_lanes(e));
  return {value, outside_exp_range(t)};
}

// sigmoid(z) and 1 - sigmoid(z) as logistic(): with e = e^-|z| and r = 1 / (1 + e) (vrcp14ps and
// one Newton step: 2^-28), r and e r for z >= 0, e r and r below; t = -|z| for outside_exp_range().
struct LogisticLanes {
  __m512 sigmoid, one_minus, t;
};
inline LogisticLanes logistic_lanes(__m512 z) {
  const __m512 t = negative_abs(z);
  const __m512 e = exp_table_lanes(t, exp2_table());
  const __m512 r = reciprocal_lanes(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
  const __m512 er = _mm512_mul_ps(e, r);
  const __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  return {_mm512_mask_blend_ps(negative, r, er), _mm512_mask_blend_ps(negative, er, r), t};
}

// gelu's 2u as gelu_twice_inner(): x (a + b x^2).
inline __m512 gelu_twice_inner_lanes(__m512 x, __m512 x2) {
  return _mm512_mul_ps(
      x, _mm512_fmadd_ps(x2, _mm512_set1_ps(kGelu2 * 0.044715f), _mm512_set1_ps(kGelu2)));
}

// gelu(x) = x sigmoid(2u), as unary_forward.
inline F32Lanes gelu_lanes(__m512 x) {
  const LogisticLanes l = logistic_lanes(gelu_twice_inner_lanes(x, _mm512_mul_ps(x, x)));
  return {_mm512_mul_ps(x, l.sigmoid), outside_exp_range(l.t)};
}

// gelu'(x) = sig (1 + 2 x u' (1 - sig)), sig = sigmoid(2u), as unary_derivative.
inline F32Lanes gelu_derivative_lanes(__m512 x) {
  const __m512 x2 = _mm512_mul_ps(x, x);
  const __m512 twice_x_du = _mm512_mul_ps(
      x, _mm512_fmadd_ps(x2, _mm512_set1_ps(kGelu2 * float(3 * 0.044715)), _mm512_set1_ps(kGelu2)));
  const LogisticLanes l = logistic_lanes(gelu_twice_inner_lanes(x, x2));
  const __m512 value =
      _mm512_mul_ps(l.sigmoid, _mm512_fmadd_ps(twice_x_du, l.one_minus, _mm512_set1_ps(1.0f)));
  return {value, outside_exp_range(l.t)};
}

// out[i] = lanes(i) on [begin, end) in steps of 16; `scalar(i)` gives element i where lanes()
// asks, and on the last (end - begin) % 16.
template <typename Lanes, typename Scalar>
void f32_lanes_map(float* out, int64_t begin, int64_t end, Lanes lanes, Scalar scalar) {
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const F32Lanes r = lanes(i);
    _mm512_storeu_ps(out + i, r.value);
    if (r.redo) {
      for (int64_t k = i; k < i + 16; ++k) out[k] = scalar(k);
    }
  }
  for (; i < end; ++i) out[i] = scalar(i);
}

// y = op(x) and dx = g op'(x) on [0, n), split over the threads as map().
template <UnaryOp op>
void f32_lanes_forward(const float* x, float* y, int64_t n) {
  static_assert(has_f32_forward_lanes<op>);
  for_range(n, [&](int64_t begin, int64_t end) {
    f32_lanes_map(
        y, begin, end,
        [&](int64_t i) {
          const __m512 v = _mm512_loadu_ps(x + i);
          return op == UnaryOp::softplus ? softplus_lanes(v) : gelu_lanes(v);
        },
        [&](int64_t i) { return unary_forward<op>(x[i], 0.0f); });
  });
}
template <UnaryOp op>
void f32_lanes_backward(const float* g, const float* x, float* dx, int64_t n) {
  static_assert(op == UnaryOp::gelu);
  for_range(n, [&](int64_t begin, int64_t end) {
    f32_lanes_map(
        dx, begin, end,
        [&](int64_t i) {
          const F32Lanes d = gelu_derivative_lanes(_mm512_loadu_ps(x + i));
          return F32Lanes{_mm512_mul_ps(_mm512_loadu_ps(g + i), d.value), d.redo};
        },
        [&](int64_t i) { return g[i] * unary_derivative<op>(x[i], 0.0f); });
  });
}

}  // namespace dssm::vec
#endif
