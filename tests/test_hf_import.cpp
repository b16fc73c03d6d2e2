// Import of transformers checkpoints: the name map on checkpoints written here in transformers'
// layout, its errors, and (when the fixtures made by bench/ref/make_hf_fixtures.py exist) our
// logits against the ones transformers computed.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

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
