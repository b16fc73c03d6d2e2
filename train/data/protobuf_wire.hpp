// Just enough of the protobuf wire format to look into a sentencepiece ModelProto (its .proto
// is not installed with the library): a message is a run of fields, each a key (field number
// << 3 | wire type) and a value.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace dssm::data {

struct WireField {
  uint64_t number = 0;
  uint64_t value = 0;      // wire types 0 (varint), 1 (fixed64) and 5 (fixed32)
  std::string_view bytes;  // wire type 2 (strings, bytes, messages)
};

// Calls `visit` with each field of `message` in order; stops at a malformed field.
void for_each_field(std::string_view message, const std::function<void(const WireField&)>& visit);

// The last occurrence of field `number` (protobuf's rule for a field given twice), or nullopt.
std::optional<WireField> find_field(std::string_view message, uint64_t number);

}  // namespace dssm::data
