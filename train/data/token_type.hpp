// The integer (or, in old Megatron files, floating) types a token file can store, with their
// sizes, names and the dtype codes of Megatron's .idx header. Readers convert to int32 on copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace dssm::data {

enum class TokenType { u8, i8, i16, i32, i64, f64, f32, u16, u32 };

int64_t token_bytes(TokenType type);
std::string_view token_type_name(TokenType type);

// Megatron/GPT-NeoX dtype codes: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64,
// 7 float32, 8 uint16. uint32 has no code. Throws for an unknown code.
TokenType token_type_from_megatron_code(uint8_t code, std::string_view where);
uint8_t megatron_code(TokenType type);

// Reads element `i` of an array of `type` at `base` (memcpy: no alignment is assumed).
double token_value(const std::byte* base, TokenType type, int64_t i);

// Copies `count` tokens starting at element `first` to `out`, converting to int32. The values are
// assumed to have been range-checked (see check_token_range).
void copy_tokens(const std::byte* base, TokenType type, int64_t first, int64_t count, int32_t* out);

// The index of the first token outside [0, vocab_size) or not an integer, or -1 when all fit.
int64_t first_token_outside(const std::byte* base, TokenType type, int64_t count,
                            int64_t vocab_size);

// A little-endian value of type T at byte `offset` (memcpy, so any alignment is fine).
template <typename T>
T load(const std::byte* base, int64_t offset) {
  T value;
  std::memcpy(&value, base + offset, sizeof(T));
  return value;
}

}  // namespace dssm::data
