// dssm::Error — the one exception type of densessm. Every message names the op (or file) that
// raised it and shows what was expected against what came.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dssm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws dssm::Error("<where>: <formatted message>") when `condition` is false.
template <typename... Args>
void check(bool condition, std::string_view where, fmt::format_string<Args...> format,
           Args&&... args) {
  if (!condition) {
    throw Error(fmt::format("{}: {}", where, fmt::format(format, std::forward<Args>(args)...)));
  }
}

template <typename... Args>
[[noreturn]] void fail(std::string_view where, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}: {}", where, fmt::format(format, std::forward<Args>(args)...)));
}

}  // namespace dssm
