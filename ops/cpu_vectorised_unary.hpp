// The unary ops over arrays of float or bf16 data (ops/unary.cpp's CPU kernels): f32 through
// map() of the forms in ops/cpu_vectorised.hpp (some on AVX-512 lanes, ops/cpu_f32_lanes.hpp).
// bf16 results are faithfully rounded: one of the two bf16 values next to the exact result (an
// error below one bf16 ulp; specials such as NaN, infinities, 0 and saturation exact), the
// accuracy of computing in f32 and rounding once. The plain ops do just that; the transcendental
// ones read the f32 kernel's result rounded from a table of all 65536 inputs or, with AVX-512,
// compute cheaper f32 forms on lanes (ops/cpu_bf16_lanes.hpp; results may then differ from the
// f32 kernel's rounded in the last bit); sqrt and rsqrt of bf16 equal the table's, from 256
// offsets. tests/test_cpu_vectorised.cpp checks every bf16 value of every op against f64.
#pragma once

#ifdef __AVX512BW__
#include <immintrin.h>
#endif

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/cpu_bf16_lanes.hpp"
#include "ops/cpu_f32_lanes.hpp"
#include "ops/cpu_vectorised.hpp"

namespace dssm::vec {

// bf16 has 65536 values, so a bf16 op can be a lookup in a table of its results, computed once
// (on first use) by the f32 kernel and rounded: one load per element whatever the function.
// Without AVX-512 these are the bf16 kernels; with it, they serve the inputs outside the lanes'
// ranges. Tables: the ops whose f32 form costs more than a lookup (not pow, whose table would
// depend on its parameter); backward looks up f'(x) in f32 for the ops that save x and whose
// derivative is transcendental, and multiplies by g.
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
    if constexpr (has_bf16_forward_lanes<op>) {
      return for_range(n, [&](int64_t begin, int64_t end) {
        bf16_lanes_forward<op>(x, y, begin, end, [&](int64_t i) {
          y[i].bits = static_cast<uint16_t>(bf16_forward_table<op>()[x[i].bits]);
        });
      });
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
#if defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512DQ__)
    if constexpr (has_bf16_derivative_lanes<op>) {
      return for_range(n, [&](int64_t begin, int64_t end) {
        bf16_lanes_backward<op>(g, s, dx, begin, end, [&](int64_t i) {
          store(dx, i, load(g, i) * bf16_derivative_table<op>()[s[i].bits]);
        });
      });
    }
#endif
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
