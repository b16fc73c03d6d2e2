// Model configurations, read from and written to JSON (configs/*.json).
//
// Every family has one struct deriving from ModelConfig. Reading goes through ConfigReader, which
// checks each field (type, range, choices), rejects unknown keys, and throws one dssm::Error that
// lists every problem found, with the valid choices, rather than stopping at the first.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dssm::models {

// The fields every family has.
struct ModelConfig {
  virtual ~ModelConfig() = default;
  std::string arch;        // "densretnet", "retnet", "llama", "mamba", "densemamba"
  int64_t vocab_size = 0;  // LLaMA's tokenizer: 32000
  int64_t d_model = 0;     // width of the residual stream
  int64_t n_layers = 0;
  virtual nlohmann::json to_json() const = 0;
};

// Reads the fields of one JSON object, collecting problems. Use: read every field with the
// typed getters (each records a problem and returns its default when the value is missing or
// bad), add cross-field checks with problem(), then call finish(), which also reports keys
// nobody read and throws if anything went wrong.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string where);

  int64_t integer(const std::string& key, int64_t min, int64_t max);  // required
  int64_t integer(const std::string& key, int64_t fallback, int64_t min, int64_t max);
  double real(const std::string& key, double fallback, double min, double max);
  bool boolean(const std::string& key, bool fallback);
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& choices);
  std::string text(const std::string& key);  // required string, any value

  void problem(const std::string& message);
  void finish() const;  // throws dssm::Error listing every problem

 private:
  const nlohmann::json* find(const std::string& key);  // marks the key as read

  const nlohmann::json& json_;
  std::string where_;
  std::vector<std::string> read_keys_;
  std::vector<std::string> problems_;
};

}  // namespace dssm::models
