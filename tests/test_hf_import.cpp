// Import of transformers checkpoints: the name map on checkpoints written here in transformers'
// layout, its errors, and (when the fixtures made by bench/ref/make_hf_fixtures.py exist) our
// logits against the ones transformers computed.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "autograd/grad_mode.hpp"
#include "models/hf_import.hpp"
#include "nn/safetensors.hpp"

using namespace dssm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("dssm_test_hf_{}_{}", ::getpid(), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_json(const fs::path& path, const json& value) {
  std::ofstream(path) << value.dump(2);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.dtype() == cb.dtype() && ca.shape() == cb.shape() &&
         std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

const json kMambaHfConfig = {{"model_type", "mamba"},
                             {"architectures", {"MambaForCausalLM"}},
                             {"vocab_size", 40},
                             {"hidden_size", 16},
                             {"state_size", 4},
                             {"num_hidden_layers", 2},
                             {"expand", 2},
                             {"intermediate_size", 32},
                             {"conv_kernel", 4},
                             {"time_step_rank", "auto"},
                             {"use_bias", false},
                             {"use_conv_bias", true},
                             {"hidden_act", "silu"},
                             {"layer_norm_epsilon", 1e-5},
                             {"tie_word_embeddings", true}};

// Our Mamba's tensors under transformers' names, written independently of models/hf_import.
std::map<std::string, Tensor> to_hf_mamba(const std::map<std::string, Tensor>& ours) {
  std::map<std::string, Tensor> hf;
  for (const auto& [name, t] : ours) {
    if (name == "embed_tokens.weight") {
      hf["backbone.embeddings.weight"] = t;
    } else if (name == "norm.weight") {
      hf["backbone.norm_f.weight"] = t;
    } else if (name.ends_with("conv1d.weight")) {
      hf["backbone." + name] = t.reshape({t.size(0), 1, t.size(1)});
    } else {
      hf["backbone." + name] = t;  // layers.N.norm / layers.N.mixer.* keep their names
    }
  }
  return hf;
}

// A LlamaForCausalLM config.json for our llama config `ours`, with the rotary base where
// transformers 4 puts it (top level) or where transformers 5 does ("rope_parameters").
json hf_llama_config(const json& ours, bool rope_parameters) {
  json hf = {{"model_type", "llama"},
             {"architectures", {"LlamaForCausalLM"}},
             {"vocab_size", ours["vocab_size"]},
             {"hidden_size", ours["d_model"]},
             {"intermediate_size", ours["ffn_dim"]},
             {"num_hidden_layers", ours["n_layers"]},
             {"num_attention_heads", ours["n_heads"]},
             {"num_key_value_heads", ours["n_heads"]},
             {"head_dim", ours["d_model"].get<int64_t>() / ours["n_heads"].get<int64_t>()},
             {"rms_norm_eps", ours["norm_eps"]},
             {"hidden_act", "silu"},
             {"attention_bias", false},
             {"mlp_bias", false},
             {"tie_word_embeddings", false}};
  if (rope_parameters) {
    hf["rope_parameters"] = {{"rope_theta", ours["rope_theta"]}, {"rope_type", "default"}};
  } else {
    hf["rope_theta"] = ours["rope_theta"];
    hf["rope_scaling"] = nullptr;
  }
  return hf;
}

// Our LLaMA's tensors under transformers' names, q/k rows moved from our adjacent pairs back to
// transformers' halves (HF row i of a head is our row 2i, HF row i + d_head/2 our row 2i + 1):
// written independently of models/hf_import.
std::map<std::string, Tensor> to_hf_llama(const std::map<std::string, Tensor>& ours,
                                          int64_t heads) {
  std::map<std::string, Tensor> hf;
  for (const auto& [name, t] : ours) {
    std::string hf_name = "model." + name;
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {".attention_norm.", ".input_layernorm."},
             {".ffn_norm.", ".post_attention_layernorm."},
             {".ffn.", ".mlp."},
             {".q_proj.", ".self_attn.q_proj."},
             {".k_proj.", ".self_attn.k_proj."},
             {".v_proj.", ".self_attn.v_proj."},
             {".o_proj.", ".self_attn.o_proj."}}) {
      if (const size_t at = hf_name.find(from); at != std::string::npos) {
        hf_name.replace(at, from.size(), to);
      }
    }
    if (name == "lm_head.weight") hf_name = name;
    Tensor value = t;
    if (name.ends_with("q_proj.weight") || name.ends_with("k_proj.weight")) {
      const auto rows = t.to_vector<float>();
      const int64_t out = t.size(0), in = t.size(1), d_head = out / heads, half = d_head / 2;
      std::vector<float> halves(rows.size());
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < half; ++i)
          for (int64_t c = 0; c < in; ++c) {
            halves[(h * d_head + i) * in + c] = rows[(h * d_head + 2 * i) * in + c];
            halves[(h * d_head + half + i) * in + c] = rows[(h * d_head + 2 * i + 1) * in + c];
          }
      value = Tensor::from_vector(halves, t.shape());
    }
    hf[hf_name] = value;
  }
  return hf;
}

// Compares our logits with the ones transformers computed for the fixture in `name`.
void check_fixture(const std::string& name) {
  const fs::path dir = fs::path(DSSM_TEST_DATA_DIR) / name;
  if (!fs::exists(dir / "config.json") || !fs::exists(dir / "logits.json")) {
    WARN("skipped: " << dir.string()
                     << " is missing (the lead makes it with bench/ref/make_hf_fixtures.py)");
    return;
  }
  auto model = models::import_hf(dir.string());
  model->eval();
  std::ifstream in(dir / "logits.json");
  const json reference = json::parse(in);
  const auto prompt = reference.at("prompt").get<std::vector<int64_t>>();
  const auto expected = reference.at("logits").get<std::vector<std::vector<double>>>();
  const int64_t T = static_cast<int64_t>(prompt.size()), V = model->config().vocab_size;
  const auto logits = model->forward(Tensor::from_vector(prompt, {1, T})).to_vector<double>();
  NoGradGuard no_grad;
  auto state = model->new_state(1);
  double worst_forward = 0, worst_step = 0;
  for (int64_t t = 0; t < T; ++t) {
    REQUIRE(static_cast<int64_t>(expected[t].size()) == V);
    const auto step =
        model->step(Tensor::from_vector<int64_t>({prompt[t]}, {1}), *state).to_vector<double>();
    for (int64_t v = 0; v < V; ++v) {
      worst_forward = std::max(worst_forward, std::abs(logits[t * V + v] - expected[t][v]));
      worst_step = std::max(worst_step, std::abs(step[v] - expected[t][v]));
    }
  }
  CHECK(worst_forward < 1e-4);
  CHECK(worst_step < 1e-4);
}

}  // namespace

TEST_CASE("a MambaForCausalLM checkpoint imports with every tensor in place", "[checkpoint]") {
  TempDir dir;
  auto ours = models::make_model(models::config_from_hf(kMambaHfConfig), 21);
  write_json(dir.path / "config.json", kMambaHfConfig);
  nn::save_safetensors((dir.path / "model.safetensors").string(), to_hf_mamba(ours->state_dict()));

  auto imported = models::import_hf(dir.path.string());
  CHECK(imported->config().to_json() == ours->config().to_json());
  CHECK(imported->config().to_json()["dt_rank"] == 1);  // "auto": ceil(16 / 16)
  const auto expected = ours->state_dict(), actual = imported->state_dict();
  REQUIRE(actual.size() == expected.size());
  for (const auto& [name, t] : expected) {
    INFO(name);
    CHECK(same_bytes(actual.at(name), t));
  }
  const Tensor ids = Tensor::from_vector<int64_t>({3, 1, 4, 1, 5}, {1, 5});
  CHECK(same_bytes(imported->forward(ids).detach(), ours->forward(ids).detach()));
}

TEST_CASE("LlamaForCausalLM tensors map to ours, q and k rows from halves to pairs",
          "[checkpoint]") {
  const json hf_config = {{"model_type", "llama"},    {"vocab_size", 30},
                          {"hidden_size", 16},        {"intermediate_size", 24},
                          {"num_hidden_layers", 1},   {"num_attention_heads", 2},
                          {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6},
                          {"rope_theta", 10000.0},    {"tie_word_embeddings", true}};
  Generator gen(22);
  const Shape proj{16, 16};
  std::map<std::string, Tensor> hf;
  for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    hf[fmt::format("model.layers.0.self_attn.{}.weight", p)] = Tensor::randn(proj, gen);
  }
  hf["model.layers.0.mlp.gate_proj.weight"] = Tensor::randn({24, 16}, gen);
  hf["model.layers.0.mlp.up_proj.weight"] = Tensor::randn({24, 16}, gen);
  hf["model.layers.0.mlp.down_proj.weight"] = Tensor::randn({16, 24}, gen);
  hf["model.layers.0.input_layernorm.weight"] = Tensor::randn({16}, gen);
  hf["model.layers.0.post_attention_layernorm.weight"] = Tensor::randn({16}, gen);
  hf["model.embed_tokens.weight"] = Tensor::randn({30, 16}, gen);
  hf["model.norm.weight"] = Tensor::randn({16}, gen);

  const auto ours = models::state_from_hf(hf_config, hf);
  CHECK(ours.size() == hf.size() + 1);  // + the tied lm_head
  CHECK(same_bytes(ours.at("lm_head.weight"), hf.at("model.embed_tokens.weight")));
  CHECK(same_bytes(ours.at("layers.0.attention_norm.weight"),
                   hf.at("model.layers.0.input_layernorm.weight")));
  CHECK(same_bytes(ours.at("layers.0.ffn_norm.weight"),
                   hf.at("model.layers.0.post_attention_layernorm.weight")));
  CHECK(same_bytes(ours.at("layers.0.ffn.down_proj.weight"),
                   hf.at("model.layers.0.mlp.down_proj.weight")));
  CHECK(same_bytes(ours.at("layers.0.v_proj.weight"),
                   hf.at("model.layers.0.self_attn.v_proj.weight")));
  // Head h, pair i: our rows (2i, 2i+1) are transformers' rows (i, i + d_head/2); d_head = 8.
  for (const char* p : {"q_proj", "k_proj"}) {
    const auto from =
        hf.at(fmt::format("model.layers.0.self_attn.{}.weight", p)).to_vector<float>();
    const auto to = ours.at(fmt::format("layers.0.{}.weight", p)).to_vector<float>();
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 4; ++i)
        for (int c = 0; c < 16; ++c) {
          CHECK(to[(h * 8 + 2 * i) * 16 + c] == from[(h * 8 + i) * 16 + c]);
          CHECK(to[(h * 8 + 2 * i + 1) * 16 + c] == from[(h * 8 + 4 + i) * 16 + c]);
        }
  }
}

TEST_CASE("a LlamaForCausalLM checkpoint imports and computes our model's logits", "[checkpoint]") {
  for (const bool rope_parameters : {false, true}) {
    for (const double rope_theta : {10000.0, 500000.0}) {
      INFO((rope_parameters ? "transformers 5" : "transformers 4")
           << ", rope_theta " << rope_theta);
      TempDir dir;
      json config = {{"arch", "llama"},         {"vocab_size", 48}, {"d_model", 32},
                     {"n_layers", 2},           {"n_heads", 4},     {"ffn_dim", 40},
                     {"rope_theta", rope_theta}};
      auto ours = models::make_model(config, std::random_device{}());
      const json hf_config = hf_llama_config(ours->config().to_json(), rope_parameters);
      write_json(dir.path / "config.json", hf_config);
      nn::save_safetensors((dir.path / "model.safetensors").string(),
                           to_hf_llama(ours->state_dict(), 4));

      auto imported = models::import_hf(dir.path.string());
      CHECK(imported->config().to_json() == ours->config().to_json());
      const auto expected = ours->state_dict(), actual = imported->state_dict();
      REQUIRE(actual.size() == expected.size());
      for (const auto& [name, t] : expected) {
        INFO(name);
        CHECK(same_bytes(actual.at(name), t));
      }
      // Same weights, same arithmetic: the logits agree bit for bit, by forward and by step.
      imported->eval(), ours->eval();
      const Tensor ids = Tensor::from_vector<int64_t>({5, 0, 47, 9, 9, 31, 2}, {1, 7});
      CHECK(same_bytes(imported->forward(ids).detach(), ours->forward(ids).detach()));
      NoGradGuard no_grad;
      auto state_a = imported->new_state(1), state_b = ours->new_state(1);
      for (int64_t t = 0; t < 7; ++t) {
        const Tensor id = ids.select(1, t).contiguous();
        CHECK(same_bytes(imported->step(id, *state_a), ours->step(id, *state_b)));
      }
    }
  }
}

TEST_CASE("LLaMA's rope_theta: read from either place, written back, checked", "[checkpoint]") {
  json hf = hf_llama_config({{"vocab_size", 8},
                             {"d_model", 8},
                             {"ffn_dim", 8},
                             {"n_layers", 1},
                             {"n_heads", 2},
                             {"norm_eps", 1e-5},
                             {"rope_theta", 250000.0}},
                            true);
  CHECK(models::config_from_hf(hf)["rope_theta"] == 250000.0);
  hf["rope_parameters"].erase("rope_theta");
  CHECK(models::config_from_hf(hf)["rope_theta"] == 10000.0);  // transformers' default
  hf["rope_parameters"]["rope_type"] = "linear";
  hf["rope_parameters"]["factor"] = 2.0;
  CHECK_THROWS_WITH(models::config_from_hf(hf),
                    Catch::Contains("rope_type") && Catch::Contains("\"linear\"") &&
                        Catch::Contains("only \"default\" is supported"));
  hf.erase("rope_parameters");
  hf["rope_theta"] = "big";
  CHECK_THROWS_WITH(models::config_from_hf(hf),
                    Catch::Contains("\"rope_theta\" must be a number, got \"big\""));
  hf["rope_theta"] = 1.0;
  CHECK_THROWS_WITH(models::make_model(models::config_from_hf(hf), 0),
                    Catch::Contains("'rope_theta' must be > 1, got 1"));
  hf["rope_theta"] = 1e4;
  auto model = models::make_model(models::config_from_hf(hf), 0);
  CHECK(model->config().to_json()["rope_theta"] == 1e4);
}

TEST_CASE("transformers import names what it cannot map", "[checkpoint]") {
  json config = kMambaHfConfig;
  config["use_bias"] = true;
  CHECK_THROWS_WITH(models::config_from_hf(config),
                    Catch::Contains("\"use_bias\": true, only false is supported"));
  config["model_type"] = "gpt2";
  CHECK_THROWS_WITH(models::config_from_hf(config), Catch::Contains("\"gpt2\" is not supported"));
  CHECK_THROWS_WITH(models::state_from_hf(kMambaHfConfig,
                                          {{"backbone.layers.0.mixer.mystery", Tensor::ones({2})}}),
                    Catch::Contains("1 tensor(s) without a mapping") &&
                        Catch::Contains("backbone.layers.0.mixer.mystery"));
  CHECK_THROWS_WITH(
      models::import_hf("/nonexistent/dir"),
      Catch::Contains("cannot open config.json") && Catch::Contains("/nonexistent/dir"));
}

TEST_CASE("imported MambaForCausalLM gives transformers' logits", "[checkpoint]") {
  check_fixture("hf_mamba_tiny");
}

TEST_CASE("imported LlamaForCausalLM gives transformers' logits", "[checkpoint]") {
  check_fixture("hf_llama_tiny");
}
