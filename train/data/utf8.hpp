// UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
#pragma once

#include <cstdint>
#include <string_view>

namespace dssm::data {

// The byte offset of the first byte that does not start a valid sequence, or -1 if all is valid.
int64_t first_invalid_utf8(std::string_view text);

}  // namespace dssm::data
