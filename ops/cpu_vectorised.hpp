// Vectorised f32 CPU kernels: the f32 forms of ops/elementwise_math.hpp (f32 and bf16 data; bf16
// is computed in f32 and rounded once) as single-pass loops that GCC vectorises.
//
// Every kernel is one `#pragma omp simd` loop (split over threads above kParallelMin elements)
// whose body loads an element as f32, applies a function of ops/cpu_vectorised_math.hpp and
// stores the result: no temporary buffers, one pass over memory. The functions are the same as
// the scalar definitions in ops/elementwise_math.hpp (which stay the definition, and what f64 and
// CUDA use); where an f32 form is rearranged for accuracy its comment says how.
// tests/test_cpu_vectorised.cpp checks every form against the f64 scalar definition. The unary
// ops over whole arrays, and the bf16 shortcuts of the transcendental ones, are in
// ops/cpu_vectorised_unary.hpp.
#pragma once

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>

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

}  // namespace dssm::vec
