// Vectorised f32 CPU kernels: the f32 forms of ops/elementwise_math.hpp (f32 and bf16 data; bf16
// is computed in f32 and rounded once) as single-pass loops that GCC vectorises.
//
// Every kernel is one `#pragma omp simd` loop (split over threads above kParallelMin elements)
// whose body loads an element as f32, applies a function of ops/cpu_vectorised_math.hpp and
// stores the result: no temporary buffers, one pass over memory. The functions are the same as
// the scalar definitions in ops/elementwise_math.hpp (which stay the definition, and what f64 and
// CUDA use); where an f32 form is rearranged for accuracy its comment says how.
// tests/test_cpu_vectorised.cpp checks every form against the f64 scalar definition. bf16 data
// of the transcendental ops is looked up in a table of the f32 kernel's results instead (below).
#pragma once

#include <omp.h>

#ifdef __AVX512BW__
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/cpu_vectorised_math.hpp"
#include "ops/elementwise_math.hpp"
#include "tensor/bf16.hpp"

namespace dssm::vec {

// Loops go parallel above this many elements (as the scalar kernels do).
inline constexpr int64_t kParallelMin = 32768;

// Element i of float or bf16 data, as f32: bf16 is the top half of the f32 pattern.
DSSM_VEC_INLINE float load(const float* p, int64_t i) {
  return p[i];
}
DSSM_VEC_INLINE float load(const bf16* p, int64_t i) {
  return std::bit_cast<float>(static_cast<uint32_t>(p[i].bits) << 16);
}

// Writes v to element i of float or bf16 data. bf16: bf16::round_from_float without its early
// return, so that the loop vectorises: round to nearest even, NaN kept quiet.
DSSM_VEC_INLINE void store(float* p, int64_t i, float v) {
  p[i] = v;
}
DSSM_VEC_INLINE void store(bf16* p, int64_t i, float v) {
  const auto u = std::bit_cast<uint32_t>(v);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x0040u;
  p[i].bits = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// Calls body(begin, end) over [0, n): at once up to kParallelMin elements, else on one contiguous
// part per thread. (GCC compiles `omp parallel for simd` loops 10x slower than a plain `omp simd`
// loop inside a parallel region.)
template <typename Body>
void for_range(int64_t n, Body&& body) {
  if (n <= kParallelMin) return body(0, n);
#pragma omp parallel
  {
    const int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();
    body(n * part / parts, n * (part + 1) / parts);
  }
}

// out[i] = f(in[i]) and out[i] = f(a[i], b[i]) over [0, n), f on f32 values.
template <typename T, typename F>
void map(const T* in, T* out, int64_t n, F f) {
  for_range(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) store(out, i, f(load(in, i)));
  });
}
template <typename T, typename F>
void map(const T* a, const T* b, T* out, int64_t n, F f) {
  for_range(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) store(out, i, f(load(a, i), load(b, i)));
  });
}

// Asks for [p, p + n) to be brought into the caches ahead of its use: the next row, while this
// one's passes run in L1 (else the memory would be idle meanwhile). Prefetches never fault.
template <typename T>
DSSM_VEC_INLINE void prefetch(const T* p, int64_t n) {
  const auto* bytes = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(T)); b += 64)
    __builtin_prefetch(bytes + b);
}

// sum and max of f(i) over [0, n), vectorised. The sum runs in blocks of kSumBlock terms whose
// totals are then added: its rounding error grows with the block length, not with n. Within a
// block, kSumLanes partial sums (lanes[k] adds the terms k, k + 64, k + 128, ...) are added last:
// four AVX-512 registers of independent additions, where a single accumulator would make each
// vector addition wait for the one before (3 cycles on Zen 4), the bound of a pass over a row in
// L1. The order of the additions is the same whether the compiler vectorises the loop or not (the
// sanitizer build). With `ahead`, each chunk of 64 terms prefetches the same 64 elements of
// `ahead`: the next row, fetched from memory while this one's pass runs in L1.
inline constexpr int64_t kSumBlock = 1024, kSumLanes = 64;
template <typename F, typename T = float>
DSSM_VEC_INLINE float sum(int64_t n, F f, const T* ahead = nullptr) {
  float total = 0.0f;
  for (int64_t begin = 0; begin < n; begin += kSumBlock) {
    const int64_t end = begin + kSumBlock < n ? begin + kSumBlock : n;
    float lanes[kSumLanes] = {};
    int64_t i = begin;
    for (; i + kSumLanes <= end; i += kSumLanes) {
      if (ahead) prefetch(ahead + i, kSumLanes);
#pragma omp simd
      for (int64_t k = 0; k < kSumLanes; ++k) lanes[k] += f(i + k);
    }
    for (int64_t k = 0; i + k < end; ++k) lanes[k] += f(i + k);
    float block = 0.0f;
    for (int64_t k = 0; k < kSumLanes; ++k) block += lanes[k];
    total += block;
  }
  return total;
}

template <typename F>
DSSM_VEC_INLINE float max(int64_t n, F f) {
  float m = -kInfinity;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = std::max(m, f(i));
  return m;
}

// The ops with an f32 form here (pow stays on the scalar loop: no vectorised pow).
template <UnaryOp op>
inline constexpr bool has_unary = op != UnaryOp::pow;

// f(x) as math::unary_forward<op>; p is the op's scalar parameter.
template <UnaryOp op>
DSSM_VEC_INLINE float unary_forward(float x, float p) {
  if constexpr (op == UnaryOp::exp) {
    return vec::exp(x);
  } else if constexpr (op == UnaryOp::log) {
    return vec::log(x);
  } else if constexpr (op == UnaryOp::sqrt) {
    return vec::sqrt(x);
  } else if constexpr (op == UnaryOp::rsqrt) {
    return vec::rsqrt(x);
  } else if constexpr (op == UnaryOp::sigmoid) {
    return logistic(x).sigmoid;
  } else if constexpr (op == UnaryOp::tanh) {
    return vec::tanh(x);
  } else if constexpr (op == UnaryOp::silu) {
    return x * logistic(x).sigmoid;
  } else if constexpr (op == UnaryOp::gelu) {
    // 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation of 1 + tanh(u) for x < 0. As in
    // logistic(), with e = e^-|2u|: x / (1 + e) for x >= 0 and x e / (1 + e) below.
    const float z = gelu_twice_inner(x, x * x);
    const float e = exp_nonpositive(-std::fabs(z));
    return (z < 0.0f ? x * e : x) / (1.0f + e);
  } else if constexpr (op == UnaryOp::softplus) {
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows; for x > 20 it rounds to x, as
    // the definition's branch returns. (x > 0 ? x : 0 turns NaN into 0; the log1p keeps it.)
    return (x > 0.0f ? x : 0.0f) + log1p_unit(exp_nonpositive(-std::fabs(x)));
  } else {
    return math::unary_forward<op, float>(x, p);  // plain arithmetic
  }
}

// f'(s) as math::unary_derivative<op>, s being x or y = f(x) as the op saves it (unary.cpp).
template <UnaryOp op>
DSSM_VEC_INLINE float unary_derivative(float s, float p) {
  if constexpr (op == UnaryOp::tanh) {
    // 1 - y^2 = (1 - y)(1 + y): exact 1 - y near |y| = 1, where 1 - y * y cancels.
    return (1.0f - s) * (1.0f + s);
  } else if constexpr (op == UnaryOp::silu) {
    // silu' = sig(x) (1 + x (1 - sig(x))).
    const Logistic l = logistic(s);
    return l.sigmoid * (1.0f + s * l.one_minus);
  } else if constexpr (op == UnaryOp::gelu) {
    // gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) u', t = tanh(u); with sig = sigmoid(2u) = 0.5 (1 + t)
    // and 1 - t^2 = 4 sig (1 - sig): gelu' = sig (1 + 2 x u' (1 - sig)). x is clamped to
    // [-20, 20], beyond which gelu' is 1 or 0 to f32 precision (and x^3 could overflow).
    const float x = s < -20.0f ? -20.0f : (s > 20.0f ? 20.0f : s), x2 = x * x;
    const Logistic l = logistic(gelu_twice_inner(x, x2));
    return l.sigmoid * std::fma(gelu_twice_x_inner_dx(x, x2), l.one_minus, 1.0f);
  } else if constexpr (op == UnaryOp::softplus) {
    return logistic(s).sigmoid;
  } else {
    return math::unary_derivative<op, float>(s, s, p);  // plain arithmetic of x or y
  }
}

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

// table[b] = the bits of f(x) in bf16 for the x of bits b, made by map()'s bf16 loop: the same
// code and rounding as the loop it replaces. 32-bit entries, since the vectorised lookup is a
// 32-bit gather. A function-local static: built once, by the first caller (thread-safe in C++).
template <UnaryOp op>
const uint32_t* bf16_forward_table() {
  static const std::vector<uint32_t> table = [] {
    const std::vector<bf16> x = all_bf16();
    std::vector<bf16> y(kBf16Values);
    map(x.data(), y.data(), kBf16Values, [](float v) { return unary_forward<op>(v, 0.0f); });
    std::vector<uint32_t> bits(kBf16Values);
    for (int64_t b = 0; b < kBf16Values; ++b) bits[b] = y[b].bits;
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
    const __m512i pick01 =
        _mm512_mask_blend_epi16(_mm512_test_epi16_mask(b, _mm512_set1_epi16(0x40)),
                                _mm512_permutex2var_epi16(part[0], b, part[1]),
                                _mm512_permutex2var_epi16(part[2], b, part[3]));
    const __m512i pick23 =
        _mm512_mask_blend_epi16(_mm512_test_epi16_mask(b, _mm512_set1_epi16(0x40)),
                                _mm512_permutex2var_epi16(part[4], b, part[5]),
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

// table[b] = f'(x) in f32 for the x of bits b, made by map()'s f32 loop.
template <UnaryOp op>
const float* bf16_derivative_table() {
  static const std::vector<float> table = [] {
    const std::vector<bf16> x = all_bf16();
    std::vector<float> xf(kBf16Values), d(kBf16Values);
    for (int64_t b = 0; b < kBf16Values; ++b) xf[b] = load(x.data(), b);
    map(xf.data(), d.data(), kBf16Values, [](float v) { return unary_derivative<op>(v, 0.0f); });
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
    const uint32_t* table = bf16_forward_table<op>();
    for_range(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i].bits = static_cast<uint16_t>(table[x[i].bits]);
    });
  } else {
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
    map(g, s, dx, n, [p](float gv, float sv) { return gv * unary_derivative<op>(sv, p); });
  }
}

}  // namespace dssm::vec
