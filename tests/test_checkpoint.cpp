// Checkpoints: the safetensors reader and writer against hand-built bytes, every malformed-file
// error, and model checkpoint directories (save, load bit-exactly, clear errors on mismatches).
#include <catch2/catch.hpp>

#include <fmt/ranges.h>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/checkpoint.hpp"
#include "models/language_model.hpp"
#include "nn/safetensors.hpp"

using namespace dssm;
namespace fs = std::filesystem;

namespace {

// A fresh empty folder under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           fmt::format("dssm_test_checkpoint_{}_{}", ::getpid(), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string u64_bytes(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file from a header text (padded to 8 bytes here) and a data section.
std::string safetensors_bytes(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return u64_bytes(header.size()) + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.dtype() == cb.dtype() && ca.shape() == cb.shape() &&
         (ca.nbytes() == 0 || std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0);
}

}  // namespace

TEST_CASE("safetensors round trip is bit-exact for every dtype and shape", "[checkpoint]") {
  TempDir dir;
  Generator gen(71);
  std::map<std::string, Tensor> tensors;
  tensors["f32"] = Tensor::randn({3, 5}, gen, DType::f32);
  tensors["f64"] = Tensor::randn({2, 3, 4}, gen, DType::f64);
  tensors["bf16"] = Tensor::randn({7}, gen, DType::bf16);
  tensors["i32"] = Tensor::from_vector<int32_t>({INT32_MIN, -1, 0, 1, INT32_MAX}, {5});
  tensors["i64"] = Tensor::from_vector<int64_t>({INT64_MIN, 42, INT64_MAX}, {3, 1});
  tensors["scalar"] = Tensor::scalar(-2.5, DType::f64);
  tensors["empty"] = Tensor::zeros({0, 4}, DType::f32);
  // Non-finite values and a strided view: stored by value, row-major.
  tensors["special"] = Tensor::from_vector<float>(
      {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.0f,
       std::numeric_limits<float>::denorm_min()},
      {4});
  tensors["transposed"] = Tensor::randn({4, 3}, gen, DType::f64).transpose(0, 1);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a b"}};

  const std::string path = dir.file("t.safetensors");
  nn::save_safetensors(path, tensors, metadata);
  const std::string bytes = read_bytes(path);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  CHECK(header_bytes % 8 == 0);
  CHECK_FALSE(fs::exists(path + ".tmp"));

  const auto loaded = nn::load_safetensors(path);
  CHECK(loaded.metadata == metadata);
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(loaded.tensors.count(name));
    CHECK(same_bytes(loaded.tensors.at(name), t));
  }
}

TEST_CASE("safetensors writer produces the exact bytes of the format", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("exact.safetensors");
  nn::save_safetensors(path, {{"b", Tensor::from_vector<int32_t>({7, -8}, {2})},
                              {"a", Tensor::from_vector<float>({1.5f, -2.0f, 3.25f}, {3, 1})}});
  // Names in order, each tensor's bytes right after the previous one's.
  const std::string header = R"({"a":{"data_offsets":[0,12],"dtype":"F32","shape":[3,1]},)"
                             R"("b":{"data_offsets":[12,20],"dtype":"I32","shape":[2]}})";
  const std::string expected =
      safetensors_bytes(header, raw<float>({1.5f, -2.0f, 3.25f}) + raw<int32_t>({7, -8}));
  CHECK(read_bytes(path) == expected);
}

TEST_CASE("safetensors reader reads hand-built files", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("hand.safetensors");
  // Unsorted offsets, BF16 and I64, metadata first, the reference's spacing.
  const uint16_t one_bf16 = 0x3f80, minus_two_bf16 = 0xc000;
  const std::string header =
      R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [2], )"
      R"("data_offsets": [16, 20]}, "ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})";
  write_bytes(path, safetensors_bytes(header, raw<int64_t>({-3, 1LL << 40}) +
                                                  raw<uint16_t>({one_bf16, minus_two_bf16})));
  const auto loaded = nn::load_safetensors(path);
  CHECK(loaded.metadata.at("format") == "pt");
  CHECK(loaded.tensors.at("ids").to_vector<int64_t>() == std::vector<int64_t>{-3, 1LL << 40});
  CHECK(loaded.tensors.at("w").dtype() == DType::bf16);
  CHECK(loaded.tensors.at("w").to_vector<float>() == std::vector<float>{1.0f, -2.0f});
}

TEST_CASE("safetensors reader rejects every malformed file, naming file and tensor",
          "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string eight = raw<float>({1.0f, 2.0f});
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":{}}})", name, dtype, shape,
                       offsets);
  };
  auto object = [](const std::vector<std::string>& entries) {
    return fmt::format("{{{}}}", fmt::join(entries, ","));
  };
  auto expect_error = [&](const std::string& bytes, const std::string& message) {
    write_bytes(path, bytes);
    INFO(message);
    CHECK_THROWS_WITH(nn::load_safetensors(path),
                      Catch::Matchers::Contains(path) && Catch::Matchers::Contains(message));
  };

  expect_error("\x01\x02", "fewer than the 8");
  expect_error(u64_bytes(1000) + "{}", "runs past the end");
  expect_error(safetensors_bytes("{\"x\": ", ""), "malformed JSON");
  expect_error(safetensors_bytes("[1, 2]", ""), "must be a JSON object");
  expect_error(safetensors_bytes(object({entry("x", "F16", "[2]", "[0,4]")}), "1234"),
               "tensor 'x': unknown dtype 'F16'");
  expect_error(safetensors_bytes(R"({"x":{"dtype":"F32","shape":[2]}})", eight),
               "tensor 'x': missing field 'data_offsets'");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[-2]", "[0,8]")}), eight),
               "tensor 'x': field 'shape' must hold non-negative integers");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[3]", "[0,8]")}), eight),
               "tensor 'x': data_offsets [0, 8) hold 8 bytes, but shape [3] of F32 needs 12");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[2]", "[8,0]")}), eight),
               "tensor 'x': data_offsets [8, 0) end before they begin");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[2]", "[4,12]")}), eight),
               "tensor 'x': data_offsets [4, 12) run past the data section of 8 bytes");
  expect_error(
      safetensors_bytes(
          object({entry("x", "F32", "[2]", "[0,8]"), entry("y", "F32", "[1]", "[4,8]")}), eight),
      "tensor 'y': data_offsets [4, 8) overlap tensor 'x'");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[1]", "[4,8]")}), eight),
               "tensor 'x': data_offsets begin at 4, leaving a gap");
  expect_error(safetensors_bytes(object({entry("x", "F32", "[1]", "[0,4]")}), eight),
               "trailing bytes");
  expect_error(safetensors_bytes(R"({"__metadata__":{"k":1}})", ""),
               "__metadata__ 'k' must be a string");
  CHECK_THROWS_WITH(
      nn::load_safetensors(dir.file("absent.safetensors")),
      Catch::Matchers::Contains("absent.safetensors") && Catch::Matchers::Contains("cannot open"));
}

namespace {

nlohmann::json tiny_densemamba() {
  return {{"arch", "densemamba"}, {"vocab_size", 29}, {"d_model", 16},         {"n_layers", 3},
          {"d_state", 4},         {"dense_m", 2},     {"dense_gate_hidden", 4}};
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("a model checkpoint loads back bit-exactly, for every arch", "[checkpoint]") {
  Generator gen(72);
  std::vector<nlohmann::json> configs = {tiny_densemamba()};
  for (const char* name : {"mamba-tiny", "llama-tiny", "retnet-tiny", "densretnet-tiny"}) {
    configs.push_back(read_json(fmt::format("{}/../../configs/{}.json", DSSM_TEST_DATA_DIR, name)));
  }
  for (const auto& config : configs) {
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(config.dump() << " in " << dtype_name(dtype));
      TempDir dir;
      auto model = models::make_model(config, 5);
      model->to(dtype);
      model->dropout_generator().advance(1234);
      models::save_checkpoint(dir.path.string(), *model);
      CHECK(read_json(dir.file("config.json")) == model->config().to_json());

      auto loaded = models::load_checkpoint(dir.path.string());
      CHECK(loaded->config().to_json() == model->config().to_json());
      CHECK(loaded->dropout_generator().offset() == model->dropout_generator().offset());
      CHECK(loaded->dropout_generator().seed() == model->dropout_generator().seed());
      const auto expected = model->state_dict(), actual = loaded->state_dict();
      REQUIRE(actual.size() == expected.size());
      for (const auto& [name, t] : expected) {
        INFO(name);
        CHECK(same_bytes(actual.at(name), t));
      }
      model->eval(), loaded->eval();
      const Tensor ids = Tensor::from_vector<int64_t>({1, 4, 2, 7, 3, 0}, {1, 6});
      // Equal weights give equal logits, bit for bit (the kernels round the same on every run).
      CHECK(same_bytes(loaded->forward(ids).detach(), model->forward(ids).detach()));
    }
  }
}

TEST_CASE("checkpoint loading names missing, extra, mis-shaped and other-dtype tensors",
          "[checkpoint]") {
  TempDir dir;
  auto model = models::make_model(tiny_densemamba(), 6);
  models::save_checkpoint(dir.path.string(), *model);
  const std::string weights = dir.file("model.safetensors");
  const auto good = nn::load_safetensors(weights);

  auto state = good.tensors;
  state.erase("layers.1.mixer.A_log");
  state["layers.9.mixer.D"] = Tensor::ones({32});
  state["embed_tokens.weight"] = Tensor::zeros({29, 15});
  state["norm.weight"] = Tensor::ones({16}, DType::f64);
  nn::save_safetensors(weights, state, good.metadata);
  CHECK_THROWS_WITH(
      models::load_checkpoint(dir.path.string()),
      Catch::Contains(weights) && Catch::Contains("4 problem(s)") &&
          Catch::Contains("missing tensor 'layers.1.mixer.A_log' (f32 [32, 4])") &&
          Catch::Contains("unexpected tensor 'layers.9.mixer.D'") &&
          Catch::Contains("tensor 'embed_tokens.weight' has shape [29, 15], the "
                          "model expects [29, 16]") &&
          Catch::Contains("tensor 'norm.weight' has dtype f64, the model expects f32"));

  // The same checks apply when loading into an existing model.
  CHECK_THROWS_WITH(models::load_weights(*model, weights), Catch::Contains("4 problem(s)"));

  write_bytes(dir.file("config.json"), "{\"arch\": \"densemamba\",");
  CHECK_THROWS_WITH(models::load_checkpoint(dir.path.string()),
                    Catch::Contains("config.json") && Catch::Contains("not valid JSON"));
  write_bytes(dir.file("config.json"), R"({"arch": "mamba", "vocab_size": 29})");
  CHECK_THROWS_WITH(models::load_checkpoint(dir.path.string()),
                    Catch::Contains("'d_model' is required"));
  CHECK_THROWS_WITH(models::load_checkpoint(dir.file("nowhere")),
                    Catch::Contains("is not a directory"));
}
