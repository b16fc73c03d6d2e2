#include "train/data/formats.hpp"

#include <fmt/format.h>

#include <vector>

#include "tensor/error.hpp"

namespace dssm::data {
namespace {

template <typename T>
void write_as(AtomicFile& file, TokenType type, std::span<const int32_t> tokens) {
  std::vector<T> converted(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    converted[i] = static_cast<T>(tokens[i]);
    DSSM_CHECK(static_cast<int64_t>(converted[i]) == tokens[i], file.path(),
               "token id {} does not fit the shard's dtype {}", tokens[i], token_type_name(type));
  }
  file.write(converted.data(), converted.size() * sizeof(T));
}

}  // namespace

void write_tokens(AtomicFile& file, TokenType type, std::span<const int32_t> tokens) {
  switch (type) {
    case TokenType::u8:
      return write_as<uint8_t>(file, type, tokens);
    case TokenType::i8:
      return write_as<int8_t>(file, type, tokens);
    case TokenType::i16:
      return write_as<int16_t>(file, type, tokens);
    case TokenType::i32:
      return write_as<int32_t>(file, type, tokens);
    case TokenType::i64:
      return write_as<int64_t>(file, type, tokens);
    case TokenType::f64:
      return write_as<double>(file, type, tokens);
    case TokenType::f32:
      return write_as<float>(file, type, tokens);
    case TokenType::u16:
      return write_as<uint16_t>(file, type, tokens);
    case TokenType::u32:
      return write_as<uint32_t>(file, type, tokens);
  }
}

std::string hex_bytes(const std::byte* bytes, int64_t count) {
  std::string out;
  for (int64_t i = 0; i < count; ++i) {
    out += fmt::format("{}{:02x}", i == 0 ? "" : " ", static_cast<unsigned>(bytes[i]));
  }
  return out;
}

}  // namespace dssm::data
