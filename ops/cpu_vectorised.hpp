// Vectorised f32 forms of the formulas in ops/elementwise_math.hpp, for the CPU kernels.
//
// GCC does not vectorise std::exp / std::log / std::tanh without -ffast-math, so the f32 CPU
// kernels (and the bf16 ones, which compute in f32) evaluate these Eigen array expressions
// instead: Eigen's packet math (exp, log, log1p, tanh) runs on whole SIMD registers. Each form is
// the same function as the scalar definition in ops/elementwise_math.hpp (which stays the
// definition, and what f64 and CUDA use); where the f32 form is rearranged for accuracy the
// comment says how. tests/test_cpu_vectorised.cpp checks every form against the f64 scalar
// definition. Kernels work on contiguous chunks of kChunk floats (L1-sized), in parallel.
#pragma once

#include <Eigen/Core>

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/elementwise_math.hpp"
#include "tensor/bf16.hpp"

namespace dssm::vec {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Floats per chunk: two inputs and an output of 8 KB each stay in L1.
inline constexpr int64_t kChunk = 2048;
// Chunked loops go parallel above this many elements (as the scalar kernels do).
inline constexpr int64_t kParallelMin = 32768;

// Eigen 3.4 does not vectorise select() or comparisons (they make bool arrays), so the forms
// below pick between branches with arithmetic blends of 0/1 masks built from min/max.

// 1 where x < bound - 1e-30, 0 where x >= bound, a fraction in between (callers use it only where
// both branches agree there). NaN gives NaN, and the results stay NaN.
template <typename X>
auto below(const X& x, float bound) {
  return ((bound - x) * 1e30f).max(0.0f).min(1.0f);
}

// exp(x) = exp(x / 2)^2, with Eigen's exp: correct over the whole f32 range. Eigen's own exp
// overflows to inf from x = 88.4 in its AVX-512 form (exp(88.72) = 3.4e38 is finite), and its
// generic form clamps x at -88.72, returning ~3e-39 for anything below, -inf included. exp(x / 2)
// is finite and normal for every x of finite f32 exp, and the square rounds to the right value:
// inf above 88.72, the right denormal below -87.3, 0 from -104 down (exp(-inf) = 0 exactly, as
// softmax over masked entries needs). Within 4e-7 relative (tests/test_cpu_vectorised.cpp); NaN
// stays NaN.
template <typename X>
auto exp(const X& x) {
  return (0.5f * x).exp().square();
}

// log(x), Eigen's. Its generic form treats denormal inputs as FLT_MIN, so those are scaled by 2^23
// into the normal range first and 23 log 2 is taken off again: log(1e-40) = -92.1, not -87.3.
template <typename X>
auto log(const X& x) {
  const auto tiny = below(x * 0x1p100f, 0x1p-26f);  // x < 2^-126 = FLT_MIN, scaled up by 2^100
  return (x * (1.0f + tiny * 8388607.0f)).log() - tiny * 15.9423851f;
}

// sigmoid(z) = 1 / (1 + e^-z) and 1 - sigmoid(z) = sigmoid(-z) from e = exp(-|z|) <= 1, which
// never overflows: e / (1 + e) on the small side, 1 / (1 + e) on the other. Neither cancels
// (1 - sigmoid(z) is not formed by subtraction), and tails keep their relative accuracy down to
// the denormals (silu(-95) = -95 e^-95, not 0). `negative` is below(z, 0) (or below(x, 0) for
// any x of the sign of z); where it is a fraction, |z| < 1e-30 and e = 1.
template <typename N, typename E>
auto sigmoid(const N& negative, const E& e) {
  return ((1.0f - negative) + negative * e) / (1.0f + e);
}
template <typename N, typename E>
auto one_minus_sigmoid(const N& negative, const E& e) {
  return (negative + (1.0f - negative) * e) / (1.0f + e);
}

// gelu's u(x) = sqrt(2/pi) (x + 0.044715 x^3) and u'(x); u has the sign of x.
template <typename X>
auto gelu_inner(const X& x) {
  return 0.7978845608028654f * (x + 0.044715f * x * x * x);
}
template <typename X>
auto gelu_inner_dx(const X& x) {
  return 0.7978845608028654f * (1.0f + float(3 * 0.044715) * x * x);
}

// True for the ops whose f32 forward has a vectorised form here. (sqrt and rsqrt are left to the
// scalar loop: Eigen's f32 sqrt flushes denormal inputs to 0.)
template <UnaryOp op>
inline constexpr bool has_unary_forward =
    op == UnaryOp::exp || op == UnaryOp::log || op == UnaryOp::sigmoid || op == UnaryOp::tanh ||
    op == UnaryOp::silu || op == UnaryOp::gelu || op == UnaryOp::softplus;

// y = f(x) on n <= kChunk contiguous floats, f as math::unary_forward<op>. exp(-|z|) goes to a
// buffer first: Eigen would evaluate a subexpression used twice twice.
template <UnaryOp op>
void unary_forward_chunk(const float* in, float* out, int64_t n) {
  const ConstArrayMap x(in, n);
  ArrayMap y(out, n);
  alignas(64) float exp_buffer[kChunk];
  ArrayMap e(exp_buffer, n);
  if constexpr (op == UnaryOp::exp) y = vec::exp(x);
  if constexpr (op == UnaryOp::log) y = vec::log(x);
  if constexpr (op == UnaryOp::sigmoid) {
    e = vec::exp(-x.abs());
    y = vec::sigmoid(below(x, 0.0f), e);
  }
  // Eigen's tanh: a rational approximation, within 3e-7 relative of tanh (with FMA).
  if constexpr (op == UnaryOp::tanh) y = x.tanh();
  if constexpr (op == UnaryOp::silu) {
    e = vec::exp(-x.abs());
    y = x * vec::sigmoid(below(x, 0.0f), e);
  }
  // 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation of 1 + tanh(u) for x < 0.
  if constexpr (op == UnaryOp::gelu) {
    e = vec::exp(-2.0f * gelu_inner(x).abs());
    y = x * vec::sigmoid(below(x, 0.0f), e);
  }
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows; for x > 20 it rounds to x, as the
  // definition's branch returns.
  if constexpr (op == UnaryOp::softplus) y = x.max(0.0f) + vec::exp(-x.abs()).log1p();
}

// True for the ops whose f32 derivative has a vectorised form here (the derivatives of the
// other ops are plain arithmetic, which the scalar loop already vectorises).
template <UnaryOp op>
inline constexpr bool has_unary_derivative =
    op == UnaryOp::tanh || op == UnaryOp::silu || op == UnaryOp::gelu || op == UnaryOp::softplus;

// dx = g * f'(s) on n <= kChunk contiguous floats, s being x or y as math::unary_derivative<op>
// reads it.
template <UnaryOp op>
void unary_backward_chunk(const float* grad, const float* saved, float* out, int64_t n) {
  const ConstArrayMap g(grad, n), s(saved, n);
  ArrayMap dx(out, n);
  alignas(64) float exp_buffer[kChunk];
  ArrayMap e(exp_buffer, n);
  // 1 - y^2 = (1 - y)(1 + y): exact 1 - y near |y| = 1, where 1 - y * y cancels.
  if constexpr (op == UnaryOp::tanh) dx = g * ((1.0f - s) * (1.0f + s));
  // silu' = sig(x) (1 + x (1 - sig(x))).
  if constexpr (op == UnaryOp::silu) {
    e = vec::exp(-s.abs());
    const auto negative = below(s, 0.0f);
    dx = g * (vec::sigmoid(negative, e) * (1.0f + s * vec::one_minus_sigmoid(negative, e)));
  }
  // gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) u', t = tanh(u); with sig = sigmoid(2u) = 0.5 (1 + t)
  // and 1 - t^2 = 4 sig (1 - sig): gelu' = sig (1 + 2 x u' (1 - sig)). x is clamped to
  // [-20, 20], beyond which gelu' is 1 or 0 to f32 precision (and x^3 could overflow).
  if constexpr (op == UnaryOp::gelu) {
    const auto xc = s.max(-20.0f).min(20.0f);
    e = vec::exp(-2.0f * gelu_inner(xc).abs());
    const auto negative = below(xc, 0.0f);
    dx = g * (vec::sigmoid(negative, e) *
              (1.0f + 2.0f * xc * gelu_inner_dx(xc) * vec::one_minus_sigmoid(negative, e)));
  }
  if constexpr (op == UnaryOp::softplus) {
    e = vec::exp(-s.abs());
    dx = g * vec::sigmoid(below(s, 0.0f), e);
  }
}

// f32 views of T data: the data itself for float, a converted copy in `buffer` for bf16.
template <typename T>
const float* as_float(const T* p, int64_t n, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<T, float>) {
    return p;
  } else {
    buffer.resize(n);
    float* out = buffer.data();
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = bf16::to_float(p[i].bits);
    return out;
  }
}

// Where to write f32 results meant for T data: the data itself for float, `buffer` for bf16
// (then copied back by store()).
template <typename T>
float* out_float(T* p, int64_t n, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<T, float>) {
    return p;
  } else {
    buffer.resize(n);
    return buffer.data();
  }
}

template <typename T>
void store(T* p, const float* values, int64_t n) {
  if constexpr (!std::is_same_v<T, float>) {
    // bf16::round_from_float without its early return, so that the loop vectorises: round to
    // nearest even, NaN kept quiet.
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      uint32_t u;
      __builtin_memcpy(&u, &values[i], sizeof u);
      const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
      const uint32_t quiet_nan = (u >> 16) | 0x0040u;
      p[i].bits = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
    }
  }
}

// Calls fn(inputs as f32, output as f32, count) over [0, n) in chunks of kChunk, in parallel
// above kParallelMin elements; T is float (no copies) or bf16 (converted per chunk).
template <typename T, size_t K, typename Fn>
void for_each_chunk(const std::array<const T*, K>& inputs, T* output, int64_t n, Fn&& fn) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel if (n > kParallelMin)
  {
    std::array<std::vector<float>, K> in_buffers;
    std::vector<float> out_buffer;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kChunk, count = std::min(kChunk, n - begin);
      std::array<const float*, K> in;
      for (size_t k = 0; k < K; ++k) in[k] = as_float(inputs[k] + begin, count, in_buffers[k]);
      float* out = out_float(output + begin, count, out_buffer);
      fn(in, out, count);
      store(output + begin, out, count);
    }
  }
}

}  // namespace dssm::vec
