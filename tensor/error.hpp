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

// Throws dssm::Error("<where>: <formatted message>").
template <typename... Args>
[[noreturn]] void fail(std::string_view where, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}: {}", where, fmt::format(format, std::forward<Args>(args)...)));
}

// DSSM_CHECK(condition, where, format, args...): fail(where, format, args...) when `condition` is
// false. A macro rather than a function so that the message's arguments are evaluated only on
// failure: they are often strings built for it (describe(tensor), shape_str(shape)), and a
// function's arguments would be built on every call, also when all is well — on the hot path of
// every op (formatting them took a third of a small model's decode step). A condition with a
// comma outside parentheses (a braced list, a template) goes in parentheses of its own.
#define DSSM_CHECK(condition, ...) ((condition) ? void(0) : ::dssm::fail(__VA_ARGS__))

}  // namespace dssm
