#include "models/config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "tensor/error.hpp"

namespace dssm::models {

ConfigReader::ConfigReader(const nlohmann::json& json, std::string where)
    : json_(json), where_(std::move(where)) {
  if (!json_.is_object())
    problems_.push_back(fmt::format("expected a JSON object, got {}", json_.type_name()));
}

const nlohmann::json* ConfigReader::find(const std::string& key) {
  read_keys_.push_back(key);
  if (!json_.is_object()) return nullptr;
  const auto it = json_.find(key);
  return it == json_.end() ? nullptr : &*it;
}

int64_t ConfigReader::integer(const std::string& key, int64_t min, int64_t max) {
  if (!json_.is_object() || !json_.contains(key)) {
    problem(fmt::format("'{}' is required (an integer in [{}, {}])", key, min, max));
    read_keys_.push_back(key);
    return min;
  }
  return integer(key, min, min, max);
}

int64_t ConfigReader::integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return fallback;
  if (!value->is_number_integer()) {
    problem(
        fmt::format("'{}' must be an integer in [{}, {}], got {}", key, min, max, value->dump()));
    return fallback;
  }
  const int64_t v = value->get<int64_t>();
  if (v < min || v > max) {
    problem(fmt::format("'{}' must be in [{}, {}], got {}", key, min, max, v));
    return fallback;
  }
  return v;
}

double ConfigReader::real(const std::string& key, double fallback, double min, double max) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return fallback;
  if (!value->is_number()) {
    problem(fmt::format("'{}' must be a number in [{}, {}], got {}", key, min, max, value->dump()));
    return fallback;
  }
  const double v = value->get<double>();
  if (!(v >= min && v <= max)) {
    problem(fmt::format("'{}' must be in [{}, {}], got {}", key, min, max, v));
    return fallback;
  }
  return v;
}

bool ConfigReader::boolean(const std::string& key, bool fallback) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) {
    problem(fmt::format("'{}' must be true or false, got {}", key, value->dump()));
    return fallback;
  }
  return value->get<bool>();
}

std::string ConfigReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& choices) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return fallback;
  const bool known = value->is_string() && std::find(choices.begin(), choices.end(),
                                                     value->get<std::string>()) != choices.end();
  if (!known) {
    problem(fmt::format("'{}' must be one of \"{}\", got {}", key, fmt::join(choices, "\", \""),
                        value->dump()));
    return fallback;
  }
  return value->get<std::string>();
}

std::string ConfigReader::text(const std::string& key) {
  const nlohmann::json* value = find(key);
  if (value == nullptr || !value->is_string()) {
    problem(fmt::format("'{}' is required (a string), got {}", key,
                        value == nullptr ? "nothing" : value->dump()));
    return "";
  }
  return value->get<std::string>();
}

void ConfigReader::problem(const std::string& message) {
  problems_.push_back(message);
}

void ConfigReader::finish() const {
  std::vector<std::string> problems = problems_;
  if (json_.is_object()) {
    for (const auto& [key, _] : json_.items()) {
      if (std::find(read_keys_.begin(), read_keys_.end(), key) == read_keys_.end()) {
        problems.push_back(
            fmt::format("unknown key '{}' (known: {})", key, fmt::join(read_keys_, ", ")));
      }
    }
  }
  if (!problems.empty()) {
    throw Error(fmt::format("{}: {} problem{} in the config:\n  - {}", where_, problems.size(),
                            problems.size() == 1 ? "" : "s", fmt::join(problems, "\n  - ")));
  }
}

}  // namespace dssm::models
