// The unary ops over arrays of float or bf16 data (ops/unary.cpp's CPU kernels): f32 through
// map() of the forms in ops/cpu_vectorised.hpp; bf16 computed in f32 and rounded once, except the
// transcendental ops, whose bf16 results are those of the f32 kernel rounded, read from a table of
// them or, with AVX-512, from cheaper forms checked against that table on every bf16 value at
// first use. tests/test_cpu_vectorised.cpp checks every bf16 value of every op.
#pragma once

#ifdef __AVX512BW__
#include <immintrin.h>
#endif

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/cpu_f32_lanes.hpp"
#include "ops/cpu_vectorised.hpp"

namespace dssm::vec {

// bf16 has 65536 values, so a bf16 op can be a lookup in a table of its results, computed once
// (on first use) by the f32 kernel and rounded: one load per element whatever the function, and
// results equal to the f32 op's rounded to bf16, exactly. (Computing in f32 per element costs the
// f32 op's arithmetic on half its bytes.) Tables: the ops whose f32 form costs more than a lookup
// (not pow, whose table would depend on its parameter); backward looks up f'(x) in f32 for the
// ops that save x and whose derivative is transcendental, and multiplies by g.
template <UnaryOp op>
inline constexpr bool has_bf16_table =
    op == UnaryOp::exp || op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
    op == UnaryOp::sigmoid || op == UnaryOp::tanh || op == UnaryOp::silu || op == UnaryOp::gelu ||
    op == UnaryOp::softplus;
template <UnaryOp op>
inline constexpr bool has_bf16_derivative_table =
    op == UnaryOp::silu || op == UnaryOp::gelu || op == UnaryOp::softplus;

// Every bf16 bit pattern in order: the inputs from which the tables are made.
inline constexpr int64_t kBf16Values = 65536;
inline std::vector<bf16> all_bf16() {
  std::vector<bf16> v(kBf16Values);
  for (int64_t b = 0; b < kBf16Values; ++b) v[b].bits = static_cast<uint16_t>(b);
  return v;
}
inline std::vector<float> all_bf16_as_f32() {
  const std::vector<bf16> x = all_bf16();
  std::vector<float> v(kBf16Values);
  for (int64_t b = 0; b < kBf16Values; ++b) v[b] = load(x.data(), b);
  return v;
}

// y = f(x) and dx = g f'(s) over arrays (below); the tables are made by their f32 kernels.
template <UnaryOp op, typename T>
void unary_forward(const T* x, T* y, int64_t n, float p);
template <UnaryOp op, typename T>
void unary_backward(const T* g, const T* s, T* dx, int64_t n, float p);

// table[b] = the bits of f(x) in bf16 for the x of bits b: the f32 kernel's result (map()'s loop,
// or ops/cpu_f32_lanes.hpp's) rounded as map()'s bf16 loop rounds. 32-bit entries, since the
// vectorised lookup is a 32-bit gather. A function-local static: built once, by the first caller
// (thread-safe in C++).
template <UnaryOp op>
const uint32_t* bf16_forward_table() {
  static const std::vector<uint32_t> table = [] {
    const std::vector<float> x = all_bf16_as_f32();
    std::vector<float> y(kBf16Values);
    unary_forward<op>(x.data(), y.data(), kBf16Values, 0.0f);
    std::vector<uint32_t> bits(kBf16Values);
    for (int64_t b = 0; b < kBf16Values; ++b) {
      bf16 rounded;
      store(&rounded, 0, y[b]);
      bits[b] = rounded.bits;
    }
    return bits;
  }();
  return table.data();
}

// sqrt and rsqrt of bf16 without the gather (whose Zen 4 throughput, about one element per
// cycle, bounds the table lookup): for a positive normal x = 2^(2k + p) m, sqrt(x) = 2^k sqrt(2^p
// m) and rsqrt(x) = 2^-k rsqrt(2^p m), and rounding commutes with the power of 2 (the results stay
// normal). So the result's bits are an offset that depends on the low byte of x's bits only (p,
// the exponent's low bit, and the 7 mantissa bits) plus or minus k in the exponent field: 256
// offsets of 16 bits, which fit in 8 AVX-512 registers, read with vpermi2w, 32 elements at a time.
template <UnaryOp op>
inline constexpr bool scales_with_half_exponent = op == UnaryOp::sqrt || op == UnaryOp::rsqrt;

// (k + 64) in the exponent field, k = floor((e - 127) / 2) for the biased exponent e of the
// positive bits b: k + 64 = (e + 1) >> 1 = (b + 0x80) >> 8.
DSSM_VEC_INLINE uint16_t half_exponent_field(uint16_t b) {
  return static_cast<uint16_t>(((b + 0x80u) >> 8) << 7);
}

// op's result bits for the positive normal bits b (0x0080 to 0x7f7f), from the offset of b's low
// byte (arithmetic mod 2^16).
template <UnaryOp op>
DSSM_VEC_INLINE uint16_t half_exponent_result(uint16_t offset, uint16_t b) {
  const uint16_t field = half_exponent_field(b);
  return static_cast<uint16_t>(op == UnaryOp::sqrt ? offset + field : offset - field);
}

// The 256 offsets of op, solved from its table at the exponents 128 (low byte below 0x80) and
// 127, then checked against the table on every positive normal bf16 value; `exact` is false
// when one differs, and then the table lookup is used.
struct HalfExponentOffsets {
  std::array<uint16_t, 256> offsets;
  bool exact;
};
template <UnaryOp op>
const HalfExponentOffsets& bf16_half_exponent_offsets() {
  static const HalfExponentOffsets solved = [] {
    const uint32_t* table = bf16_forward_table<op>();
    HalfExponentOffsets h{};
    for (uint32_t low = 0; low < 256; ++low) {
      const auto b = static_cast<uint16_t>((low < 0x80 ? 128u << 7 : 127u << 7) | (low & 0x7fu));
      const auto bits = static_cast<uint16_t>(table[b]);
      // result = offset +- field, so offset = result -+ field = result - (0 +- field).
      h.offsets[low] = static_cast<uint16_t>(bits - half_exponent_result<op>(0, b));
    }
    h.exact = true;
    for (uint32_t b = 0x0080; b < 0x7f80; ++b) {
      h.exact &=
          half_exponent_result<op>(h.offsets[b & 0xffu], static_cast<uint16_t>(b)) == table[b];
    }
    return h;
  }();
  return solved;
}

#ifdef __AVX512BW__
// y = op(x) on [begin, end) by the offsets, 32 elements a time; vectors with an input that is not
// positive normal (0, negatives, denormals, inf, NaN) and the last n % 32 take the table.
template <UnaryOp op>
void bf16_half_exponent_lookup(const bf16* x, bf16* y, int64_t begin, int64_t end) {
  const uint32_t* table = bf16_forward_table<op>();
  const uint16_t* offsets = bf16_half_exponent_offsets<op>().offsets.data();
  __m512i part[8];  // part[j] holds the offsets 32 j to 32 j + 31
  for (int j = 0; j < 8; ++j) part[j] = _mm512_loadu_si512(offsets + 32 * j);
  int64_t i = begin;
  for (; i + 32 <= end; i += 32) {
    const __m512i b = _mm512_loadu_si512(x + i);
    // vpermi2w picks one of 64 entries by the index's bits 0-5: four picks, then bits 6 and 7 of
    // the low byte choose among them.
    const __mmask32 bit6 = _mm512_test_epi16_mask(b, _mm512_set1_epi16(0x40));
    const __m512i pick01 =
        _mm512_mask_blend_epi16(bit6, _mm512_permutex2var_epi16(part[0], b, part[1]),
                                _mm512_permutex2var_epi16(part[2], b, part[3]));
    const __m512i pick23 =
        _mm512_mask_blend_epi16(bit6, _mm512_permutex2var_epi16(part[4], b, part[5]),
                                _mm512_permutex2var_epi16(part[6], b, part[7]));
    const __m512i offset =
        _mm512_mask_blend_epi16(_mm512_test_epi16_mask(b, _mm512_set1_epi16(0x80)), pick01, pick23);
    const __m512i field =
        _mm512_slli_epi16(_mm512_srli_epi16(_mm512_add_epi16(b, _mm512_set1_epi16(0x80)), 8), 7);
    const __m512i result =
        op == UnaryOp::sqrt ? _mm512_add_epi16(offset, field) : _mm512_sub_epi16(offset, field);
    // positive normal: b - 0x0080 below 0x7f00, unsigned
    const __mmask32 regular = _mm512_cmplt_epu16_mask(
        _mm512_sub_epi16(b, _mm512_set1_epi16(0x0080)), _mm512_set1_epi16(0x7f00));
    _mm512_storeu_si512(y + i, result);
    if (regular != 0xffffffffu) {
      for (int64_t k = i; k < i + 32; ++k) y[k].bits = static_cast<uint16_t>(table[x[k].bits]);
    }
  }
  for (; i < end; ++i) y[i].bits = static_cast<uint16_t>(table[x[i].bits]);
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512DQ__)
// bf16 ops computed on 16 lanes, where a lean f32 form is faster than the table lookup (about one
// element per cycle on Zen 4, whose vector gathers are slower still). A lean form is within a
// few f32 ulps of the f32 kernel, not equal to it, so it must round to the same bf16 value:
// lanes whose lean result lies within kUndecidedUlps of the midpoint between two bf16 values
// (where a few ulps can flip the rounding) take the table, as do inputs outside the range the
// form covers (NaN, infinities, results beyond the normal range). bf16_lanes_exact() checks
// every other lane against the table, on every bf16 value, before the lean form is used.
inline constexpr uint32_t kUndecidedUlps = 16;

template <UnaryOp op>
inline constexpr bool has_bf16_lanes =
    op == UnaryOp::exp || op == UnaryOp::log || op == UnaryOp::sigmoid || op == UnaryOp::tanh ||
    op == UnaryOp::silu || op == UnaryOp::gelu;

// The inputs a lean form covers: bits (of |x| where `symmetric`) in [low, high].
struct LaneInputs {
  uint16_t low, high;
  bool symmetric;
};
template <UnaryOp op>
constexpr LaneInputs lane_inputs() {
  // 2^-120 (0x0380) and up: the odd ops' results stay normal (cvtneps flushes denormals).
  if constexpr (op == UnaryOp::exp || op == UnaryOp::sigmoid) return {0, 0x42ae, true};  // 87
  if constexpr (op == UnaryOp::silu) return {0x0380, 0x42ae, true};
  if constexpr (op == UnaryOp::tanh) return {0x0380, 0x422c, true};  // 43: 2|x| <= 86
  if constexpr (op == UnaryOp::gelu) return {0x0380, 0x4118, true};  // 9.5: |2u| <= 87
  return {0x0080, 0x7f7f, false};                                    // log: positive normal
}

// The lanes where x's sign bit is set. (negative_abs() and reciprocal_lanes() are those of
// ops/cpu_f32_lanes.hpp.)
inline __mmask16 sign_set(__m512 x) {
  return _mm512_movepi32_mask(_mm512_castps_si512(x));
}

// n = round(x / ln2) (in the low bits of `shifted`, as in reduce_ln2()) and r = x - n ln2 with
// one f32 ln2: |n| < 2^7 here, so r is off by 2.4e-7 at most.
struct ReducedLanes {
  __m512 r, shifted;
};
inline ReducedLanes reduce_ln2_lanes(__m512 x) {
  const __m512 shifter = _mm512_set1_ps(kShifter);
  const __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2e), shifter);
  const __m512 n = _mm512_sub_ps(shifted, shifter);
  return {_mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147180559945309f), x), shifted};
}
// The bits of 2^n in the exponent field (mod 2^32): << 23 keeps only n's bits of `shifted`.
inline __m512i exponent_field(__m512 shifted) {
  return _mm512_slli_epi32(_mm512_castps_si512(shifted), 23);
}

// e^x for |x| <= 87: 2^n e^r, e^r by a degree-5 polynomial of relative error 1.1e-7 (fitted like
// those of cpu_vectorised_math.hpp), 2^n added to the exponent field (the result is normal).
inline __m512 exp_lanes(__m512 x) {
  const ReducedLanes red = reduce_ln2_lanes(x);
  const __m512 r = red.r;
  __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(0.008312430471f), _mm512_set1_ps(0.04189098745f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(0.1666711817f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(0.4999922585f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(1.0f));
  return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), exponent_field(red.shifted)));
}

// e^x - 1 for x in [-86, 0], as expm1_nonpositive(): 2^n expm1(r) + (2^n - 1), expm1(r) by
// expm1_reduced()'s polynomial.
inline __m512 expm1_nonpositive_lanes(__m512 x) {
  const ReducedLanes red = reduce_ln2_lanes(x);
  const __m512 r = red.r;
  __m512 q = _mm512_fmadd_ps(r, _mm512_set1_ps(kExpm1Q[0]), _mm512_set1_ps(kExpm1Q[1]));
  q = _mm512_fmadd_ps(r, q, _mm512_set1_ps(kExpm1Q[2]));
  q = _mm512_fmadd_ps(r, q, _mm512_set1_ps(kExpm1Q[3]));
  q = _mm512_fmadd_ps(r, q, _mm512_set1_ps(kExpm1Q[4]));
  const __m512 expm1_r = _mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r);
  const __m512 scale = _mm512_castsi512_ps(
      _mm512_add_epi32(exponent_field(red.shifted), _mm512_set1_epi32(0x3f800000)));
  return _mm512_fmadd_ps(scale, expm1_r, _mm512_sub_ps(scale, _mm512_set1_ps(1.0f)));
}

// log(m) for the 128 mantissas of bf16, m = 1.M in [1, sqrt 2) or 1.M / 2 above, in f64
// rounded to f32: the log() reduction (the same k and m) with the table in place of log1p.
struct LogMantissas {
  alignas(64) float log_m[128];
};
inline const LogMantissas& log_mantissas() {
  static const LogMantissas table = [] {
    LogMantissas t{};
    for (int mantissa = 0; mantissa < 128; ++mantissa) {
      const double m = 1.0 + mantissa / 128.0;
      t.log_m[mantissa] = static_cast<float>(std::log(m < 1.4142135623730951 ? m : m / 2));
    }
    return t;
  }();
  return table;
}

// log(x) for positive normal x = 2^k m: k ln2 + log(m), log(m) picked from 128 entries by
// vpermi2ps (32 entries a pick, by the index's bits 0-4; bits 5 and 6 choose among four).
inline __m512 log_lanes(__m512 x) {
  const float* log_m = log_mantissas().log_m;
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i offset = _mm512_sub_epi32(bits, _mm512_set1_epi32(0x3f3504f3));  // as log()
  const __m512 k = _mm512_cvtepi32_ps(_mm512_srai_epi32(offset, 23));
  const __m512i mantissa = _mm512_srli_epi32(bits, 16);
  const auto part = [&](int j) { return _mm512_load_ps(log_m + 16 * j); };
  const __mmask16 bit5 = _mm512_test_epi32_mask(mantissa, _mm512_set1_epi32(0x20));
  const __m512 low = _mm512_mask_blend_ps(bit5, _mm512_permutex2var_ps(part(0), mantissa, part(1)),
                                          _mm512_permutex2var_ps(part(2), mantissa, part(3)));
  const __m512 high = _mm512_mask_blend_ps(bit5, _mm512_permutex2var_ps(part(4), mantissa, part(5)),
                                           _mm512_permutex2var_ps(part(6), mantissa, part(7)));
  const __m512 log_of_m =
      _mm512_mask_blend_ps(_mm512_test_epi32_mask(mantissa, _mm512_set1_epi32(0x40)), low, high);
  return _mm512_fmadd_ps(k, _mm512_set1_ps(kLn2Hi),
                         _mm512_fmadd_ps(k, _mm512_set1_ps(kLn2Lo), log_of_m));
}

// The sigmoid as logistic(): e = e^-|x|, 1 / (1 + e) for x >= 0 and e / (1 + e) below.
inline __m512 sigmoid_lanes(__m512 x, __m512 e) {
  const __m512 r = reciprocal_lanes(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
  return _mm512_mask_mul_ps(r, sign_set(x), e, r);
}

// op's lean form on 16 lanes of covered inputs, each as the f32 kernel's unary_forward writes it.
template <UnaryOp op>
inline __m512 forward_lanes(__m512 x) {
  if constexpr (op == UnaryOp::exp) {
    return exp_lanes(x);
  } else if constexpr (op == UnaryOp::log) {
    return log_lanes(x);
  } else if constexpr (op == UnaryOp::sigmoid) {
    return sigmoid_lanes(x, exp_lanes(negative_abs(x)));
  } else if constexpr (op == UnaryOp::silu) {
    return _mm512_mul_ps(x, sigmoid_lanes(x, exp_lanes(negative_abs(x))));
  } else if constexpr (op == UnaryOp::tanh) {
    // -expm1(-2|x|) / (2 + expm1(-2|x|)), with x's sign.
    const __m512 em = expm1_nonpositive_lanes(_mm512_mul_ps(_mm512_set1_ps(2.0f), negative_abs(x)));
    const __m512 magnitude =
        _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), em),
                      reciprocal_lanes(_mm512_add_ps(_mm512_set1_ps(2.0f), em)));
    return _mm512_or_ps(magnitude, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
  } else {
    static_assert(op == UnaryOp::gelu);
    // As unary_forward: z = 2u, e = e^-|z|, (z < 0 ? x e : x) / (1 + e).
    const __m512 z = gelu_twice_inner_lanes(x, _mm512_mul_ps(x, x));
    const __m512 e = exp_lanes(negative_abs(z));
    const __m512 r = reciprocal_lanes(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mul_ps(_mm512_mask_mul_ps(x, sign_set(z), x, e), r);
  }
}

// op on 16 bf16 values: their bf16 results and the lanes whose result must come from the table.
struct Bf16Lanes {
  __m256i bits;
  __mmask16 from_table;
};
template <UnaryOp op>
inline Bf16Lanes bf16_lanes(__m256i x) {
  const __m512 v =
      forward_lanes<op>(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16)));
  // The low 16 bits of the f32 pattern within kUndecidedUlps of 0x8000, the midpoint.
  const __m512i from_midpoint =
      _mm512_add_epi32(_mm512_slli_epi32(_mm512_castps_si512(v), 16),
                       _mm512_set1_epi32(static_cast<int32_t>((kUndecidedUlps - 0x8000u) << 16)));
  const __mmask16 undecided =
      _mm512_cmple_epu32_mask(from_midpoint, _mm512_set1_epi32(2 * kUndecidedUlps << 16));
  // Covered: bits - low <= high - low, unsigned.
  constexpr LaneInputs inputs = lane_inputs<op>();
  const __m256i b = inputs.symmetric ? _mm256_and_si256(x, _mm256_set1_epi16(0x7fff)) : x;
  const __mmask16 outside =
      _mm256_cmpgt_epu16_mask(_mm256_sub_epi16(b, _mm256_set1_epi16(inputs.low)),
                              _mm256_set1_epi16(static_cast<int16_t>(inputs.high - inputs.low)));
  return {std::bit_cast<__m256i>(_mm512_cvtneps_pbh(v)),
          static_cast<__mmask16>(undecided | outside)};
}

// Whether bf16_lanes<op>() rounds like the table on every lane it does not give to the table.
template <UnaryOp op>
bool bf16_lanes_exact() {
  static const bool exact = [] {
    const uint32_t* table = bf16_forward_table<op>();
    const std::vector<bf16> x = all_bf16();
    for (int64_t i = 0; i < kBf16Values; i += 16) {
      const Bf16Lanes lanes =
          bf16_lanes<op>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.data() + i)));
      alignas(32) uint16_t bits[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(bits), lanes.bits);
      for (int k = 0; k < 16; ++k) {
        if (!((lanes.from_table >> k) & 1) && bits[k] != table[i + k]) return false;
      }
    }
    return true;
  }();
  return exact;
}

// y = op(x) on [begin, end) in blocks of 40 elements: 16 computed on the vector units while the
// other 24 are looked up in the table by the load and integer units, which overlap: on Zen 4,
// 0.14-0.20 ns per element in L1, against 0.16-0.33 for the lanes alone and 0.29-0.33 for the
// table alone (blocks of 32 and 64 measured slower). The last n % 40 from the table.
inline constexpr int64_t kLookedUp = 24, kComputed = 16;
template <UnaryOp op>
void bf16_lanes_forward(const bf16* x, bf16* y, int64_t begin, int64_t end) {
  const uint32_t* table = bf16_forward_table<op>();
  int64_t i = begin;
  for (; i + kLookedUp + kComputed <= end; i += kLookedUp + kComputed) {
    const int64_t computed = i + kLookedUp;
    const Bf16Lanes lanes =
        bf16_lanes<op>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + computed)));
    for (int64_t k = i; k < computed; ++k) y[k].bits = static_cast<uint16_t>(table[x[k].bits]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + computed), lanes.bits);
    if (lanes.from_table) {
      for (int64_t k = computed; k < computed + kComputed; ++k) {
        y[k].bits = static_cast<uint16_t>(table[x[k].bits]);
      }
    }
  }
  for (; i < end; ++i) y[i].bits = static_cast<uint16_t>(table[x[i].bits]);
}
#endif

// table[b] = f'(x) in f32 for the x of bits b, made by the f32 backward kernel (g = 1).
template <UnaryOp op>
const float* bf16_derivative_table() {
  static const std::vector<float> table = [] {
    const std::vector<float> x = all_bf16_as_f32(), ones(kBf16Values, 1.0f);
    std::vector<float> d(kBf16Values);
    unary_backward<op>(ones.data(), x.data(), d.data(), kBf16Values, 0.0f);  // 1 f'(x) = f'(x)
    return d;
  }();
  return table.data();
}

// y = f(x) and dx = g f'(s) on n contiguous elements of float or bf16 data.
template <UnaryOp op, typename T>
void unary_forward(const T* x, T* y, int64_t n, float p) {
  if constexpr (std::is_same_v<T, bf16> && has_bf16_table<op>) {
#ifdef __AVX512BW__
    if constexpr (scales_with_half_exponent<op>) {
      if (bf16_half_exponent_offsets<op>().exact) {
        return for_range(n, [&](int64_t begin, int64_t end) {
          bf16_half_exponent_lookup<op>(x, y, begin, end);
        });
      }
    }
#endif
#if defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512DQ__)
    if constexpr (has_bf16_lanes<op>) {
      if (bf16_lanes_exact<op>()) {
        return for_range(
            n, [&](int64_t begin, int64_t end) { bf16_lanes_forward<op>(x, y, begin, end); });
      }
    }
#endif
    const uint32_t* table = bf16_forward_table<op>();
    for_range(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i].bits = static_cast<uint16_t>(table[x[i].bits]);
    });
  } else {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if constexpr (std::is_same_v<T, float> && has_f32_forward_lanes<op>) {
      return f32_lanes_forward<op>(x, y, n);
    }
#endif
    map(x, y, n, [p](float v) { return unary_forward<op>(v, p); });
  }
}
template <UnaryOp op, typename T>
void unary_backward(const T* g, const T* s, T* dx, int64_t n, float p) {
  if constexpr (std::is_same_v<T, bf16> && has_bf16_derivative_table<op>) {
    const float* table = bf16_derivative_table<op>();
    for_range(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) store(dx, i, load(g, i) * table[s[i].bits]);
    });
  } else {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if constexpr (std::is_same_v<T, float> && has_f32_derivative_lanes<op>) {
      return f32_lanes_backward<op>(g, s, dx, n);
    }
#endif
    map(g, s, dx, n, [p](float gv, float sv) { return gv * unary_derivative<op>(sv, p); });
  }
}

}  // namespace dssm::vec
