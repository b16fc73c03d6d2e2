// Element types of a tensor. Floating types: f32, f64 (for gradcheck), bf16 (stored, computed in
// f32). Integer types: i32, i64 (token ids, indices).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tensor/bf16.hpp"
#include "tensor/error.hpp"

namespace dssm {

enum class DType : uint8_t { f32, f64, bf16, i32, i64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

DType dtype_from_name(std::string_view name);  // "f32", "float32", "bf16", ... ; throws otherwise

// The C++ type that holds one element of a dtype, and back.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };

// Calls fn.template operator()<T>() with T the element type of a floating dtype:
//   dispatch_floating(x.dtype(), "relu", [&]<typename T>() { kernel<T>(...); });
template <typename Fn>
decltype(auto) dispatch_floating(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<bf16>();
    default: fail(op, "expected a floating dtype (f32, f64, bf16), got {}", dtype_name(t));
  }
}

// Same over every dtype.
template <typename Fn>
decltype(auto) dispatch_all(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<bf16>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
  }
  fail("dtype", "unknown dtype code {}", static_cast<int>(t));
}

// The type arithmetic is done in: f32 for bf16, itself otherwise.
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <typename T> using compute_t = typename compute_type<T>::type;

}  // namespace dssm
