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

#include "nn/dense_hidden_connection.hpp"

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

  int64_t integer(const std::string& key, int64_t min, int64_t max);  // required; 0 if bad
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

// Reads arch, vocab_size, d_model and n_layers into `config` (shared by every family).
void read_model_fields(ConfigReader& reader, ModelConfig& config);
nlohmann::json model_fields_json(const ModelConfig& config);

// How a retention model computes its parallel (training) forward; step() is always recurrent.
// All three compute the same function (ops/retention.hpp).
struct RetentionSettings {
  std::string form = "parallel";  // "parallel" | "chunkwise" | "recurrent"
  int64_t chunk_size = 64;        // tokens per chunk of the chunkwise form
};

// DenseRetNet (arXiv 2403.00818, Sec. 3.4; paper Table 3 sizes): GAU-like retention blocks with
// dense key/value connections. See docs/models.md.
struct DenseRetNetConfig : ModelConfig {
  int64_t n_heads = 2;
  int64_t qk_dim = 0;  // d_qk: width of q and k over all heads
  int64_t v_dim = 0;   // d_v: width of v and of the gate g over all heads (v_factor * d_model)
  double norm_eps = 1e-6;
  double dropout = 0.0;
  double init_std = 0.02;
  RetentionSettings retention;
  // Defaults: the paper's best setting (identity projection, MLP select, add fusion, m = 2,
  // one shared gate, every layer, RMSNorm after fusion as in the reference code).
  nn::DenseConnectionOptions dense = {.m = 2, .norm = true};

  static DenseRetNetConfig from_json(const nlohmann::json& json);
  nlohmann::json to_json() const override;
};

// RetNet (Sun et al. 2023) in torchscale's layout: pre-norm multi-scale retention sublayer
// (q, k, v, swish gate g; v and g of width v_dim) + pre-norm SwiGLU FFN sublayer.
struct RetNetConfig : ModelConfig {
  int64_t n_heads = 4;
  int64_t qk_dim = 0;   // torchscale: d_model
  int64_t v_dim = 0;    // torchscale: 2 * d_model
  int64_t ffn_dim = 0;  // SwiGLU hidden width
  double norm_eps = 1e-6;
  double dropout = 0.0;
  double init_std = 0.02;
  RetentionSettings retention;

  static RetNetConfig from_json(const nlohmann::json& json);
  nlohmann::json to_json() const override;
};

// LLaMA (Touvron et al. 2023): pre-norm causal softmax attention with rotary + SwiGLU FFN.
struct LlamaConfig : ModelConfig {
  int64_t n_heads = 8;
  int64_t ffn_dim = 0;
  double rope_theta = 10000.0;  // rotary angles rope_theta^(-2i/d_head), as transformers' LLaMA
  double norm_eps = 1e-6;
  double dropout = 0.0;
  double init_std = 0.02;

  static LlamaConfig from_json(const nlohmann::json& json);
  nlohmann::json to_json() const override;
};

}  // namespace dssm::models
