// The math of every elementwise op, written once and used by both the CPU kernels (ops/) and the
// CUDA kernels (cuda/): the forward value and the derivative needed by backward.
// All arithmetic is in the compute type C (float for f32 and bf16, double for f64).
// The f32 CPU kernels evaluate vectorised f32 forms of the transcendental formulas instead (same
// functions, SIMD through Eigen): ops/cpu_vectorised.hpp, tested against these in f64.
#pragma once

#include <cmath>

#include "tensor/bf16.hpp"

namespace dssm {

enum class UnaryOp {
  neg, exp, log, sqrt, rsqrt, sigmoid, tanh, silu, gelu, softplus, relu, abs,
  pow,        // x ^ p
  add_scalar, // x + p
  mul_scalar, // x * p
};

enum class BinaryOp { add, sub, mul, div };

namespace math {

// Bring the scalar math functions into this namespace so that dssm::exp(Tensor) and friends do
// not hide them: the C library's on the GPU, <cmath>'s overloads on the host.
#if defined(__CUDA_ARCH__)
using ::exp, ::log, ::log1p, ::sqrt, ::tanh, ::pow;
#else
using std::exp, std::log, std::log1p, std::sqrt, std::tanh, std::pow;
#endif

template <typename C> DSSM_HOST_DEVICE C sigmoid(C x) { return C(1) / (C(1) + exp(-x)); }

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename C> DSSM_HOST_DEVICE C gelu_inner(C x) {
  return C(0.7978845608028654) * (x + C(0.044715) * x * x * x);
}

// softplus(x) = log(1 + e^x), computed without overflow for large x.
template <typename C> DSSM_HOST_DEVICE C softplus(C x) {
  return x > C(20) ? x : log1p(exp(x));
}

template <UnaryOp op, typename C>
DSSM_HOST_DEVICE C unary_forward(C x, C p) {
  if constexpr (op == UnaryOp::neg) return -x;
  if constexpr (op == UnaryOp::exp) return exp(x);
  if constexpr (op == UnaryOp::log) return log(x);
  if constexpr (op == UnaryOp::sqrt) return sqrt(x);
  if constexpr (op == UnaryOp::rsqrt) return C(1) / sqrt(x);
  if constexpr (op == UnaryOp::sigmoid) return sigmoid(x);
  if constexpr (op == UnaryOp::tanh) return tanh(x);
  if constexpr (op == UnaryOp::silu) return x * sigmoid(x);
  if constexpr (op == UnaryOp::gelu) return C(0.5) * x * (C(1) + tanh(gelu_inner(x)));
  if constexpr (op == UnaryOp::softplus) return softplus(x);
  if constexpr (op == UnaryOp::relu) return x > C(0) ? x : C(0);
  if constexpr (op == UnaryOp::abs) return x < C(0) ? -x : x;
  if constexpr (op == UnaryOp::pow) return pow(x, p);
  if constexpr (op == UnaryOp::add_scalar) return x + p;
  if constexpr (op == UnaryOp::mul_scalar) return x * p;
}

// dy/dx given the input x and the output y = f(x).
template <UnaryOp op, typename C>
DSSM_HOST_DEVICE C unary_derivative(C x, C y, C p) {
  if constexpr (op == UnaryOp::neg) return C(-1);
  if constexpr (op == UnaryOp::exp) return y;
  if constexpr (op == UnaryOp::log) return C(1) / x;
  if constexpr (op == UnaryOp::sqrt) return C(0.5) / y;
  if constexpr (op == UnaryOp::rsqrt) return C(-0.5) * y * y * y;
  if constexpr (op == UnaryOp::sigmoid) return y * (C(1) - y);
  if constexpr (op == UnaryOp::tanh) return C(1) - y * y;
  if constexpr (op == UnaryOp::silu) {
    const C s = sigmoid(x);
    return s * (C(1) + x * (C(1) - s));
  }
  if constexpr (op == UnaryOp::gelu) {
    const C t = tanh(gelu_inner(x));
    const C inner_dx = C(0.7978845608028654) * (C(1) + C(3 * 0.044715) * x * x);
    return C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * inner_dx;
  }
  if constexpr (op == UnaryOp::softplus) return sigmoid(x);
  if constexpr (op == UnaryOp::relu) return x > C(0) ? C(1) : C(0);
  if constexpr (op == UnaryOp::abs) return x < C(0) ? C(-1) : (x > C(0) ? C(1) : C(0));
  if constexpr (op == UnaryOp::pow) return p * pow(x, p - C(1));
  if constexpr (op == UnaryOp::add_scalar) return C(1);
  if constexpr (op == UnaryOp::mul_scalar) return p;
}

template <BinaryOp op, typename C>
DSSM_HOST_DEVICE C binary_forward(C a, C b) {
  if constexpr (op == BinaryOp::add) return a + b;
  if constexpr (op == BinaryOp::sub) return a - b;
  if constexpr (op == BinaryOp::mul) return a * b;
  if constexpr (op == BinaryOp::div) return a / b;
}

}  // namespace math

// Calls fn.template operator()<kOp>() with the op as a compile-time constant, so that kernels
// are instantiated per op and the switch stays out of the inner loop.
template <typename Fn>
decltype(auto) dispatch_unary(UnaryOp op, Fn&& fn) {
  switch (op) {
    case UnaryOp::neg: return fn.template operator()<UnaryOp::neg>();
    case UnaryOp::exp: return fn.template operator()<UnaryOp::exp>();
    case UnaryOp::log: return fn.template operator()<UnaryOp::log>();
    case UnaryOp::sqrt: return fn.template operator()<UnaryOp::sqrt>();
    case UnaryOp::rsqrt: return fn.template operator()<UnaryOp::rsqrt>();
    case UnaryOp::sigmoid: return fn.template operator()<UnaryOp::sigmoid>();
    case UnaryOp::tanh: return fn.template operator()<UnaryOp::tanh>();
    case UnaryOp::silu: return fn.template operator()<UnaryOp::silu>();
    case UnaryOp::gelu: return fn.template operator()<UnaryOp::gelu>();
    case UnaryOp::softplus: return fn.template operator()<UnaryOp::softplus>();
    case UnaryOp::relu: return fn.template operator()<UnaryOp::relu>();
    case UnaryOp::abs: return fn.template operator()<UnaryOp::abs>();
    case UnaryOp::pow: return fn.template operator()<UnaryOp::pow>();
    case UnaryOp::add_scalar: return fn.template operator()<UnaryOp::add_scalar>();
    case UnaryOp::mul_scalar: return fn.template operator()<UnaryOp::mul_scalar>();
  }
  return fn.template operator()<UnaryOp::neg>();
}

template <typename Fn>
decltype(auto) dispatch_binary(BinaryOp op, Fn&& fn) {
  switch (op) {
    case BinaryOp::add: return fn.template operator()<BinaryOp::add>();
    case BinaryOp::sub: return fn.template operator()<BinaryOp::sub>();
    case BinaryOp::mul: return fn.template operator()<BinaryOp::mul>();
    case BinaryOp::div: return fn.template operator()<BinaryOp::div>();
  }
  return fn.template operator()<BinaryOp::add>();
}

}  // namespace dssm
