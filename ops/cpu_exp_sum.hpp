// The sum of e^(x_v - m) over a row of f32 logits, cross_entropy's forward (ops/cross_entropy.cpp),
// in AVX-512 intrinsics: e^t from a 32-entry table of 2^(j/32) and a degree-2 polynomial, about
// half the vector operations of exp_nonpositive_flushed(); and the max of the next row taken in
// the same loop, so that the row read from memory overlaps the exponentials of the row in L1.
#pragma once

#ifdef __AVX512F__
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "ops/cpu_vectorised.hpp"

namespace dssm::vec {

// The bits of 2^(j/32) (rounded to f32) for j = 0..31, each less j << 18: adding n << 18 (mod
// 2^32) to the entry of j = n mod 32 then gives 2^(n/32), as (n - j) << 18 = (n >> 5) << 23 adds
// n >> 5 to the exponent field.
struct Exp2Fractions {
  alignas(64) uint32_t bits[32];
};
inline const Exp2Fractions& exp2_fractions() {
  static const Exp2Fractions table = [] {
    Exp2Fractions t{};
    for (uint32_t j = 0; j < 32; ++j) {
      t.bits[j] = std::bit_cast<uint32_t>(static_cast<float>(std::exp2(j / 32.0))) - (j << 18);
    }
    return t;
  }();
  return table;
}

// e^t on 16 lanes for t in [-87, 88] (or NaN; results normal): t = n ln2/32 + r with n =
// round(32 t / ln2) (the shifter of reduce_ln2()) and |r| <= ln2/64 by a two-part ln2/32; e^t =
// s e^r with s = 2^(n/32) from the table, and s e^r = s + s q, q = r (c1 + c2 r) fitted to e^r - 1
// (relative error 5.3e-8 of e^r), in one FMA. Within 3 x 2^-24 relative: the entry's rounding, the
// fit and the FMA's rounding. Lanes not in `kept` are 0.
struct Exp2Table {
  __m512i low, high;  // entries 0-15 and 16-31
};
inline Exp2Table exp2_table() {
  return {_mm512_load_si512(exp2_fractions().bits), _mm512_load_si512(exp2_fractions().bits + 16)};
}
inline __m512 exp_table_lanes(__m512 t, Exp2Table table, __mmask16 kept = 0xffff) {
  const __m512 shifter = _mm512_set1_ps(kShifter);
  const __m512 shifted = _mm512_fmadd_ps(t, _mm512_set1_ps(32 * kLog2e), shifter);
  const __m512 n = _mm512_sub_ps(shifted, shifter);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi / 32), t);  // exact: n < 2^12
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo / 32), r);
  const __m512 q = _mm512_mul_ps(
      r, _mm512_fmadd_ps(r, _mm512_set1_ps(0.5000001957f), _mm512_set1_ps(1.0000146739f)));
  // n is in the low bits of `shifted`: its low 5 bits pick the entry, << 18 keeps n's bits only.
  const __m512i n_bits = _mm512_castps_si512(shifted);
  const __m512 s = _mm512_castsi512_ps(_mm512_add_epi32(
      _mm512_permutex2var_epi32(table.low, n_bits, table.high), _mm512_slli_epi32(n_bits, 18)));
  return _mm512_maskz_fmadd_ps(kept, s, q, s);
}

// e^t for t <= 0 (or NaN), 0 below -86.5, as exp_nonpositive_flushed().
inline __m512 exp_nonpositive_table_lanes(__m512 t, Exp2Table table) {
  const __mmask16 kept = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-86.5f), _CMP_NLT_UQ);  // or NaN
  return exp_table_lanes(t, table, kept);
}

// sum_v e^(x[v] - m) for v in [0, n) (x in the caches, m its max), and the max of next[0, n),
// the next row, read from memory meanwhile (kAhead elements further are prefetched: the loop's
// arithmetic would otherwise leave too few of next's lines in flight). The sum runs in blocks of
// kSumBlock as vec::sum: 64 partial sums (four registers), then added pairwise.
struct ExpSumAndNextMax {
  float sum, next_max;
};
inline constexpr int64_t kAhead = 2048;
inline ExpSumAndNextMax exp_sum_and_next_max(const float* x, float m, const float* next,
                                             int64_t n) {
  const Exp2Table table = exp2_table();
  const __m512 max_x = _mm512_set1_ps(m);
  __m512 next_max = _mm512_set1_ps(-kInfinity);
  // Adds e^(x - m) of the 16 elements from i in `mask` to `partial`; takes next's into next_max.
  const auto step = [&](__m512& partial, int64_t i, __mmask16 mask) {
    next_max = _mm512_max_ps(next_max, _mm512_mask_loadu_ps(next_max, mask, next + i));
    const __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), max_x);
    partial = _mm512_mask_add_ps(partial, mask, partial, exp_nonpositive_table_lanes(t, table));
  };
  float total = 0.0f;
  for (int64_t begin = 0; begin < n; begin += kSumBlock) {
    const int64_t end = begin + kSumBlock < n ? begin + kSumBlock : n;
    __m512 partial[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
    int64_t i = begin;
    for (; i + 64 <= end; i += 64) {
      prefetch(next + i + kAhead, 64);
      for (int k = 0; k < 4; ++k) step(partial[k], i + 16 * k, 0xffff);
    }
    for (int k = 0; i < end; ++k, i += 16) {
      step(partial[k], i, end - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (end - i)) - 1));
    }
    total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(partial[0], partial[1]),
                                                _mm512_add_ps(partial[2], partial[3])));
  }
  return {total, _mm512_reduce_max_ps(next_max)};
}

}  // namespace dssm::vec
#endif
