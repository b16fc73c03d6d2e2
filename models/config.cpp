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
    return 0;
  }
  return integer(key, 0, min, max);
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

// ---- the fields every family has ----------------------------------------------------------------

void read_model_fields(ConfigReader& reader, ModelConfig& config) {
  config.arch = reader.text("arch");
  config.vocab_size = reader.integer("vocab_size", 1, int64_t{1} << 24);
  config.d_model = reader.integer("d_model", 1, int64_t{1} << 20);
  config.n_layers = reader.integer("n_layers", 1, 4096);
}

nlohmann::json model_fields_json(const ModelConfig& config) {
  return {{"arch", config.arch},
          {"vocab_size", config.vocab_size},
          {"d_model", config.d_model},
          {"n_layers", config.n_layers}};
}

namespace {

void expect_arch(ConfigReader& reader, const ModelConfig& config, const std::string& arch) {
  if (!config.arch.empty() && config.arch != arch) {
    reader.problem(
        fmt::format("'arch' must be \"{}\" for this config, got \"{}\"", arch, config.arch));
  }
}

// Heads split a width evenly; rotary rotates pairs, so q/k heads need an even width.
void check_heads(ConfigReader& reader, const std::string& key, int64_t width, int64_t heads,
                 bool even) {
  if (width == 0) return;  // missing or bad: already reported
  if (width % heads != 0) {
    reader.problem(fmt::format("'{}' ({}) must be divisible by n_heads ({})", key, width, heads));
  } else if (even && (width / heads) % 2 != 0) {
    reader.problem(fmt::format("'{}' / n_heads = {} must be even (rotary rotates channel pairs)",
                               key, width / heads));
  }
}

void read_retention(ConfigReader& reader, RetentionSettings& retention) {
  retention.form =
      reader.choice("retention_form", "parallel", {"parallel", "chunkwise", "recurrent"});
  retention.chunk_size = reader.integer("chunk_size", 64, 1, int64_t{1} << 20);
}

void write_retention(nlohmann::json& json, const RetentionSettings& retention) {
  json["retention_form"] = retention.form;
  json["chunk_size"] = retention.chunk_size;
}

template <typename Enum>
Enum parse_enum(ConfigReader& reader, const std::string& key, Enum fallback,
                const std::vector<Enum>& values) {
  std::vector<std::string> names;
  for (Enum v : values) names.push_back(nn::to_string(v));
  const std::string name = reader.choice(key, nn::to_string(fallback), names);
  for (Enum v : values) {
    if (nn::to_string(v) == name) return v;
  }
  return fallback;
}

void read_dense(ConfigReader& reader, nn::DenseConnectionOptions& dense) {
  using nn::DenseFusion, nn::DenseProjection, nn::DenseSelect;
  dense.projection =
      parse_enum(reader, "dense_projection", dense.projection,
                 {DenseProjection::none, DenseProjection::identity, DenseProjection::linear});
  dense.select = parse_enum(reader, "dense_select", dense.select,
                            {DenseSelect::none, DenseSelect::mlp, DenseSelect::linear});
  dense.fusion =
      parse_enum(reader, "dense_fusion", dense.fusion, {DenseFusion::add, DenseFusion::concat});
  dense.m = reader.integer("dense_m", dense.m, 0, 64);
  dense.shared = reader.boolean("dense_shared", dense.shared);
  dense.every = reader.integer("dense_every", dense.every, 1, 64);
  dense.gate_hidden = reader.integer("dense_gate_hidden", dense.gate_hidden, 0, int64_t{1} << 20);
  dense.norm = reader.boolean("dense_norm", dense.norm);
}

void write_dense(nlohmann::json& json, const nn::DenseConnectionOptions& dense) {
  json["dense_projection"] = nn::to_string(dense.projection);
  json["dense_select"] = nn::to_string(dense.select);
  json["dense_fusion"] = nn::to_string(dense.fusion);
  json["dense_m"] = dense.m;
  json["dense_shared"] = dense.shared;
  json["dense_every"] = dense.every;
  json["dense_gate_hidden"] = dense.gate_hidden;
  json["dense_norm"] = dense.norm;
}

constexpr int64_t kMaxWidth = int64_t{1} << 20;

// The fields DenseRetNet and RetNet share: heads, the q/k and v widths (each split evenly into
// the heads, q/k heads of even width for rotary), norm eps, dropout, init std, retention form.
template <typename Config>
void read_retention_model(ConfigReader& reader, Config& c) {
  c.n_heads = reader.integer("n_heads", c.n_heads, 1, 1024);
  c.qk_dim = reader.integer("qk_dim", 1, kMaxWidth);
  c.v_dim = reader.integer("v_dim", 1, kMaxWidth);
  check_heads(reader, "qk_dim", c.qk_dim, c.n_heads, true);
  check_heads(reader, "v_dim", c.v_dim, c.n_heads, false);
  c.norm_eps = reader.real("norm_eps", c.norm_eps, 0.0, 1.0);
  c.dropout = reader.real("dropout", c.dropout, 0.0, 0.99);
  c.init_std = reader.real("init_std", c.init_std, 0.0, 10.0);
  read_retention(reader, c.retention);
}

template <typename Config>
nlohmann::json retention_model_json(const Config& c) {
  nlohmann::json json = model_fields_json(c);
  json["n_heads"] = c.n_heads;
  json["qk_dim"] = c.qk_dim;
  json["v_dim"] = c.v_dim;
  json["norm_eps"] = c.norm_eps;
  json["dropout"] = c.dropout;
  json["init_std"] = c.init_std;
  write_retention(json, c.retention);
  return json;
}

}  // namespace

// ---- DenseRetNet
// -----------------------------------------------------------------------------------

DenseRetNetConfig DenseRetNetConfig::from_json(const nlohmann::json& json) {
  ConfigReader reader(json, "densretnet config");
  DenseRetNetConfig c;
  read_model_fields(reader, c);
  expect_arch(reader, c, "densretnet");
  read_retention_model(reader, c);
  read_dense(reader, c.dense);
  c.dense.norm_eps = c.norm_eps;
  reader.finish();
  return c;
}

nlohmann::json DenseRetNetConfig::to_json() const {
  nlohmann::json json = retention_model_json(*this);
  write_dense(json, dense);
  return json;
}

// ---- RetNet
// ----------------------------------------------------------------------------------------

RetNetConfig RetNetConfig::from_json(const nlohmann::json& json) {
  ConfigReader reader(json, "retnet config");
  RetNetConfig c;
  read_model_fields(reader, c);
  expect_arch(reader, c, "retnet");
  read_retention_model(reader, c);
  c.ffn_dim = reader.integer("ffn_dim", 1, kMaxWidth);
  reader.finish();
  return c;
}

nlohmann::json RetNetConfig::to_json() const {
  nlohmann::json json = retention_model_json(*this);
  json["ffn_dim"] = ffn_dim;
  return json;
}

// ---- LLaMA
// -----------------------------------------------------------------------------------------

LlamaConfig LlamaConfig::from_json(const nlohmann::json& json) {
  ConfigReader reader(json, "llama config");
  LlamaConfig c;
  read_model_fields(reader, c);
  expect_arch(reader, c, "llama");
  c.n_heads = reader.integer("n_heads", c.n_heads, 1, 1024);
  c.ffn_dim = reader.integer("ffn_dim", 1, kMaxWidth);
  c.rope_theta = reader.real("rope_theta", c.rope_theta, 1.0, 1e12);
  if (c.rope_theta <= 1.0) {
    reader.problem(fmt::format("'rope_theta' must be > 1, got {}", c.rope_theta));
  }
  c.norm_eps = reader.real("norm_eps", c.norm_eps, 0.0, 1.0);
  c.dropout = reader.real("dropout", c.dropout, 0.0, 0.99);
  c.init_std = reader.real("init_std", c.init_std, 0.0, 10.0);
  check_heads(reader, "d_model", c.d_model, c.n_heads, true);
  reader.finish();
  return c;
}

nlohmann::json LlamaConfig::to_json() const {
  nlohmann::json json = model_fields_json(*this);
  json["n_heads"] = n_heads;
  json["ffn_dim"] = ffn_dim;
  json["rope_theta"] = rope_theta;
  json["norm_eps"] = norm_eps;
  json["dropout"] = dropout;
  json["init_std"] = init_std;
  return json;
}

}  // namespace dssm::models
