#include "train/data/token_type.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "tensor/error.hpp"

namespace dssm::data {
namespace {

// Calls fn.template operator()<T>() with the C++ type stored for `type`.
template <typename Fn>
decltype(auto) visit_type(TokenType type, Fn&& fn) {
  switch (type) {
    case TokenType::u8:
      return fn.template operator()<uint8_t>();
    case TokenType::i8:
      return fn.template operator()<int8_t>();
    case TokenType::i16:
      return fn.template operator()<int16_t>();
    case TokenType::i32:
      return fn.template operator()<int32_t>();
    case TokenType::i64:
      return fn.template operator()<int64_t>();
    case TokenType::f64:
      return fn.template operator()<double>();
    case TokenType::f32:
      return fn.template operator()<float>();
    case TokenType::u16:
      return fn.template operator()<uint16_t>();
    case TokenType::u32:
      return fn.template operator()<uint32_t>();
  }
  fail("token type", "unknown token type {}", static_cast<int>(type));
}

}  // namespace

int64_t token_bytes(TokenType type) {
  return visit_type(type, []<typename T>() { return static_cast<int64_t>(sizeof(T)); });
}

std::string_view token_type_name(TokenType type) {
  constexpr std::string_view names[] = {"uint8",   "int8",    "int16",  "int32", "int64",
                                        "float64", "float32", "uint16", "uint32"};
  return names[static_cast<int>(type)];
}

TokenType token_type_from_megatron_code(uint8_t code, std::string_view where) {
  DSSM_CHECK(
      code >= 1 && code <= 8, where,
      "unknown dtype code {}, expected 1 (uint8), 2 (int8), 3 (int16), 4 (int32), 5 (int64), "
      "6 (float64), 7 (float32) or 8 (uint16)",
      code);
  return static_cast<TokenType>(code - 1);
}

uint8_t megatron_code(TokenType type) {
  DSSM_CHECK(type != TokenType::u32, "megatron", "uint32 tokens have no Megatron dtype code");
  return static_cast<uint8_t>(static_cast<int>(type) + 1);
}

double token_value(const std::byte* base, TokenType type, int64_t i) {
  return visit_type(type, [&]<typename T>() {
    return static_cast<double>(load<T>(base, i * static_cast<int64_t>(sizeof(T))));
  });
}

void copy_tokens(const std::byte* base, TokenType type, int64_t first, int64_t count,
                 int32_t* out) {
  visit_type(type, [&]<typename T>() {
    const std::byte* from = base + first * static_cast<int64_t>(sizeof(T));
    if constexpr (std::is_same_v<T, int32_t>) {
      std::memcpy(out, from, static_cast<size_t>(count) * sizeof(T));
    } else {
      for (int64_t i = 0; i < count; ++i) {
        out[i] = static_cast<int32_t>(load<T>(from, i * static_cast<int64_t>(sizeof(T))));
      }
    }
  });
}

int64_t first_token_outside(const std::byte* base, TokenType type, int64_t count,
                            int64_t vocab_size) {
  return visit_type(type, [&]<typename T>() {
    // Blocks scanned in parallel; the smallest offending index wins.
    constexpr int64_t block = int64_t{1} << 20;
    const int64_t blocks = (count + block - 1) / block;
    int64_t first_bad = count;
#pragma omp parallel for schedule(dynamic) reduction(min : first_bad)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t end = std::min(count, (b + 1) * block);
      for (int64_t i = b * block; i < end; ++i) {
        const T v = load<T>(base, i * static_cast<int64_t>(sizeof(T)));
        bool bad;
        if constexpr (std::is_floating_point_v<T>) {
          bad = !(v >= 0 && static_cast<double>(v) < static_cast<double>(vocab_size)) ||
                std::floor(v) != v;
        } else if constexpr (std::is_signed_v<T>) {
          bad = v < 0 || static_cast<int64_t>(v) >= vocab_size;
        } else {
          bad = static_cast<uint64_t>(v) >= static_cast<uint64_t>(vocab_size);
        }
        if (bad) {
          first_bad = std::min(first_bad, i);
          break;
        }
      }
    }
    return first_bad == count ? int64_t{-1} : first_bad;
  });
}

}  // namespace dssm::data
