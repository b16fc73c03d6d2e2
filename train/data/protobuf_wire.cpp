#include "train/data/protobuf_wire.hpp"

#include <algorithm>
#include <cstring>

namespace dssm::data {
namespace {

uint64_t read_varint(std::string_view bytes, size_t& at) {
  uint64_t value = 0;
  for (int shift = 0; at < bytes.size() && shift < 64; shift += 7) {
    const auto byte = static_cast<uint8_t>(bytes[at++]);
    value |= uint64_t{byte & 0x7fu} << shift;
    if (byte < 0x80) break;
  }
  return value;
}

uint64_t read_fixed(std::string_view bytes, size_t& at, size_t width) {
  uint64_t value = 0;
  std::memcpy(&value, bytes.data() + at, width);  // little-endian, as the wire format
  at += width;
  return value;
}

}  // namespace

void for_each_field(std::string_view message, const std::function<void(const WireField&)>& visit) {
  size_t at = 0;
  while (at < message.size()) {
    const uint64_t key = read_varint(message, at), type = key & 7;
    WireField field{.number = key >> 3};
    if (type == 0) {
      field.value = read_varint(message, at);
    } else if (type == 2) {
      const uint64_t length = std::min<uint64_t>(read_varint(message, at), message.size() - at);
      field.bytes = message.substr(at, length);
      at += length;
    } else if ((type == 1 || type == 5) && at + (type == 1 ? 8 : 4) <= message.size()) {
      field.value = read_fixed(message, at, type == 1 ? 8 : 4);
    } else {
      return;
    }
    visit(field);
  }
}

std::optional<WireField> find_field(std::string_view message, uint64_t number) {
  std::optional<WireField> found;
  for_each_field(message, [&](const WireField& field) {
    if (field.number == number) found = field;
  });
  return found;
}

}  // namespace dssm::data
