#include "models/hf_import.hpp"

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "autograd/grad_mode.hpp"
#include "nn/safetensors.hpp"
#include "ops/shape.hpp"
#include "tensor/error.hpp"

namespace dssm::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kWhere = "import_hf";

std::string model_type(const json& hf) {
  DSSM_CHECK(hf.is_object() && hf.contains("model_type") && hf["model_type"].is_string(), kWhere,
             "config.json has no \"model_type\" (expected \"mamba\" or \"llama\")");
  const std::string type = hf["model_type"].get<std::string>();
  DSSM_CHECK(type == "mamba" || type == "llama", kWhere,
             "model_type \"{}\" is not supported (expected \"mamba\" or \"llama\")", type);
  return type;
}

const json& required(const json& hf, const char* key) {
  DSSM_CHECK(hf.contains(key) && !hf[key].is_null(), kWhere, "config.json lacks \"{}\"", key);
  return hf[key];
}

// A key that must be absent or hold `expected` (a feature we do not implement otherwise).
void expect_value(const json& hf, const char* key, const json& expected) {
  DSSM_CHECK(!hf.contains(key) || hf[key] == expected, kWhere,
             "config.json has \"{}\": {}, only {} is supported", key,
             hf.contains(key) ? hf[key].dump() : "", expected.dump());
}

json mamba_config(const json& hf) {
  const int64_t d = required(hf, "hidden_size").get<int64_t>();
  const int64_t expand = hf.value("expand", 2);
  const json& rank = hf.value("time_step_rank", json("auto"));
  expect_value(hf, "use_bias", false);
  expect_value(hf, "use_conv_bias", true);
  expect_value(hf, "hidden_act", "silu");
  expect_value(hf, "tie_word_embeddings", true);
  expect_value(hf, "intermediate_size", expand * d);
  return {{"arch", "mamba"},
          {"vocab_size", required(hf, "vocab_size")},
          {"d_model", d},
          {"n_layers", required(hf, "num_hidden_layers")},
          {"d_state", hf.value("state_size", 16)},
          {"expand", expand},
          {"d_conv", hf.value("conv_kernel", 4)},
          {"dt_rank", rank.is_string() ? (d + 15) / 16 : rank.get<int64_t>()},
          {"dt_min", hf.value("time_step_min", 1e-3)},
          {"dt_max", hf.value("time_step_max", 0.1)},
          {"dt_init_floor", hf.value("time_step_floor", 1e-4)},
          {"norm_eps", hf.value("layer_norm_epsilon", 1e-5)}};
}

// LLaMA's rotary base: "rope_theta" at the top (transformers 4) or inside "rope_parameters"
// (transformers 5, whose "rope_type" must be "default": no scaled variants).
double llama_rope_theta(const json& hf) {
  const json* holder = &hf;
  if (hf.contains("rope_parameters") && !hf["rope_parameters"].is_null()) {
    holder = &hf["rope_parameters"];
    DSSM_CHECK(holder->is_object(), kWhere,
               "config.json's \"rope_parameters\" must be an object, got {}", holder->dump());
    const json type = holder->value("rope_type", json("default"));
    DSSM_CHECK(
        type == "default", kWhere,
        "config.json has \"rope_parameters\": {{\"rope_type\": {}}}, only \"default\" is supported",
        type.dump());
  }
  if (!holder->contains("rope_theta")) return hf.value("rope_theta", 10000.0);
  const json& theta = (*holder)["rope_theta"];
  DSSM_CHECK(theta.is_number(), kWhere, "config.json's \"rope_theta\" must be a number, got {}",
             theta.dump());
  return theta.get<double>();
}

json llama_config(const json& hf) {
  const int64_t d = required(hf, "hidden_size").get<int64_t>();
  const int64_t heads = required(hf, "num_attention_heads").get<int64_t>();
  expect_value(hf, "num_key_value_heads", heads);  // no grouped-query attention
  expect_value(hf, "head_dim", d / heads);
  expect_value(hf, "rope_scaling", nullptr);
  expect_value(hf, "attention_bias", false);
  expect_value(hf, "mlp_bias", false);
  expect_value(hf, "hidden_act", "silu");
  return {{"arch", "llama"},
          {"vocab_size", required(hf, "vocab_size")},
          {"d_model", d},
          {"n_layers", required(hf, "num_hidden_layers")},
          {"n_heads", heads},
          {"ffn_dim", required(hf, "intermediate_size")},
          {"norm_eps", hf.value("rms_norm_eps", 1e-6)},
          {"rope_theta", llama_rope_theta(hf)}};
}

// transformers name -> ours, by regular expression; "" drops the tensor.
struct Rule {
  std::regex pattern;
  std::string replacement;
};

const std::vector<Rule>& rules_for(const std::string& type) {
  static const std::vector<Rule> kMamba = {
      {std::regex(R"(backbone\.embeddings\.weight)"), "embed_tokens.weight"},
      {std::regex(R"(backbone\.norm_f\.weight)"), "norm.weight"},
      {std::regex(R"(backbone\.layers\.(\d+)\.norm\.weight)"), "layers.$1.norm.weight"},
      {std::regex(R"(backbone\.layers\.(\d+)\.mixer\.(in_proj|x_proj|dt_proj|out_proj|conv1d)\.)"
                  R"((weight|bias))"),
       "layers.$1.mixer.$2.$3"},
      {std::regex(R"(backbone\.layers\.(\d+)\.mixer\.(A_log|D))"), "layers.$1.mixer.$2"},
      {std::regex(R"(lm_head\.weight)"), ""},  // tied to the embedding
  };
  static const std::vector<Rule> kLlama = {
      {std::regex(R"(model\.embed_tokens\.weight)"), "embed_tokens.weight"},
      {std::regex(R"(model\.norm\.weight)"), "norm.weight"},
      {std::regex(R"(lm_head\.weight)"), "lm_head.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.input_layernorm\.weight)"),
       "layers.$1.attention_norm.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.post_attention_layernorm\.weight)"),
       "layers.$1.ffn_norm.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.weight)"),
       "layers.$1.$2.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj)\.weight)"),
       "layers.$1.ffn.$2.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.rotary_emb\.inv_freq)"), ""},  // a buffer
  };
  return type == "mamba" ? kMamba : kLlama;
}

// Rows of a [heads * d_head, in] projection from rotate_half order to adjacent pairs.
Tensor halves_to_pairs(const Tensor& weight, int64_t heads) {
  const int64_t d_head = weight.size(0) / heads, half = d_head / 2;
  std::vector<int64_t> rows;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      rows.push_back(h * d_head + i);
      rows.push_back(h * d_head + half + i);
    }
  }
  return index_select(weight, 0, Tensor::from_vector(rows, {weight.size(0)}));
}

std::map<std::string, Tensor> read_tensors(const fs::path& dir) {
  if (fs::exists(dir / "model.safetensors")) {
    return nn::load_safetensors((dir / "model.safetensors").string()).tensors;
  }
  const fs::path index_path = dir / "model.safetensors.index.json";
  DSSM_CHECK(fs::exists(index_path), kWhere, "'{}' has neither model.safetensors nor {}",
             dir.string(), index_path.filename().string());
  std::ifstream in(index_path);
  const json index = json::parse(in);
  std::set<std::string> shards;
  for (const auto& [_, file] : index.at("weight_map").items()) shards.insert(file);
  std::map<std::string, Tensor> tensors;
  for (const std::string& shard : shards) {
    auto part = nn::load_safetensors((dir / shard).string()).tensors;
    tensors.insert(part.begin(), part.end());
  }
  return tensors;
}

}  // namespace

json config_from_hf(const json& hf_config) {
  return model_type(hf_config) == "mamba" ? mamba_config(hf_config) : llama_config(hf_config);
}

std::map<std::string, Tensor> state_from_hf(const json& hf_config,
                                            const std::map<std::string, Tensor>& hf) {
  const std::string type = model_type(hf_config);
  NoGradGuard no_grad;
  std::map<std::string, Tensor> ours;
  std::vector<std::string> unknown;
  for (const auto& [name, tensor] : hf) {
    const Rule* rule = nullptr;
    for (const Rule& r : rules_for(type)) {
      if (std::regex_match(name, r.pattern)) rule = &r;
    }
    if (rule == nullptr) {
      unknown.push_back(name);
      continue;
    }
    if (rule->replacement.empty()) continue;
    const std::string our_name = std::regex_replace(name, rule->pattern, rule->replacement);
    Tensor t = tensor.to(DType::f32);
    if (our_name.ends_with("conv1d.weight")) {  // [di, 1, K] -> [di, K]
      DSSM_CHECK(t.dim() == 3 && t.size(1) == 1, kWhere,
                 "'{}': expected [channels, 1, width], got {}", name, describe(t));
      t = t.reshape({t.size(0), t.size(2)});
    }
    if (our_name.ends_with("q_proj.weight") || our_name.ends_with("k_proj.weight")) {
      t = halves_to_pairs(t, required(hf_config, "num_attention_heads").get<int64_t>());
    }
    ours[our_name] = t.contiguous();
  }
  DSSM_CHECK(unknown.empty(), kWhere, "{} tensor(s) without a mapping to our {} names, e.g. '{}'",
             unknown.size(), type, unknown.empty() ? "" : unknown.front());
  const bool tied = hf_config.value("tie_word_embeddings", type == "mamba");
  if (type == "llama" && tied && !ours.count("lm_head.weight") &&
      ours.count("embed_tokens.weight")) {
    ours["lm_head.weight"] = ours["embed_tokens.weight"].clone();
  }
  return ours;
}

std::unique_ptr<LanguageModel> import_hf(const std::string& dir) {
  try {
    std::ifstream in(fs::path(dir) / "config.json");
    DSSM_CHECK(in.good(), kWhere, "cannot open config.json");
    json hf_config;
    try {
      hf_config = json::parse(in);
    } catch (const json::parse_error& e) {
      fail(kWhere, "config.json is not valid JSON: {}", e.what());
    }
    auto model = make_model(config_from_hf(hf_config), 0);
    model->load_state_dict(state_from_hf(hf_config, read_tensors(dir)));
    return model;
  } catch (const Error& e) {
    throw Error(fmt::format("{} (importing the transformers checkpoint '{}')", e.what(), dir));
  }
}

}  // namespace dssm::models
