#include "models/checkpoint.hpp"

#include <filesystem>
#include <fstream>
#include <set>

#include "nn/safetensors.hpp"
#include "tensor/error.hpp"

namespace dssm::models {
namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    DSSM_CHECK(out.good(), "save_checkpoint", "cannot write '{}'", temp);
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  DSSM_CHECK(!ec, "save_checkpoint", "cannot rename '{}' to '{}': {}", temp, path, ec.message());
}

nlohmann::json read_config(const std::string& path) {
  std::ifstream in(path);
  DSSM_CHECK(in.good(), "load_checkpoint", "cannot open '{}'", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("load_checkpoint", "'{}' is not valid JSON: {}", path, e.what());
  }
}

uint64_t metadata_u64(const nn::SafetensorsContents& file, const std::string& key,
                      const std::string& path) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) return 0;
  try {
    return std::stoull(it->second);
  } catch (const std::exception&) {
    fail("load_checkpoint", "'{}': metadata '{}' is not an unsigned integer: '{}'", path, key,
         it->second);
  }
}

// Every problem at once: missing, unexpected, mis-shaped and other-dtype tensors.
void check_matches(const LanguageModel& model, const std::map<std::string, Tensor>& tensors,
                   const std::string& path) {
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& p : model.named_parameters()) {
    expected.insert(p.name);
    const auto it = tensors.find(p.name);
    if (it == tensors.end()) {
      problems.push_back(fmt::format("missing tensor '{}' ({} {})", p.name,
                                     dtype_name(p.tensor.dtype()), shape_str(p.tensor.shape())));
      continue;
    }
    const Tensor& t = it->second;
    if (t.shape() != p.tensor.shape()) {
      problems.push_back(fmt::format("tensor '{}' has shape {}, the model expects {}", p.name,
                                     shape_str(t.shape()), shape_str(p.tensor.shape())));
    }
    if (t.dtype() != p.tensor.dtype()) {
      problems.push_back(fmt::format("tensor '{}' has dtype {}, the model expects {}", p.name,
                                     dtype_name(t.dtype()), dtype_name(p.tensor.dtype())));
    }
  }
  for (const auto& [name, _] : tensors) {
    if (!expected.count(name)) problems.push_back(fmt::format("unexpected tensor '{}'", name));
  }
  if (problems.empty()) return;
  std::string lines;
  for (const auto& line : problems) lines += "\n  " + line;
  fail("load_weights", "'{}' does not match the model ({}): {} problem(s):{}", path,
       model.config().arch, problems.size(), lines);
}

// Checks, copies the weights in, and restores the dropout generator.
void apply(LanguageModel& model, const nn::SafetensorsContents& file, const std::string& path) {
  check_matches(model, file.tensors, path);
  model.load_state_dict(file.tensors);
  if (file.metadata.count("dropout_seed")) {
    model.dropout_generator().set_state(metadata_u64(file, "dropout_seed", path),
                                        metadata_u64(file, "dropout_offset", path));
  }
}

}  // namespace

void save_checkpoint(const std::string& dir, LanguageModel& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  DSSM_CHECK(!ec, "save_checkpoint", "cannot create directory '{}': {}", dir, ec.message());
  const auto params = model.named_parameters();
  DSSM_CHECK(!params.empty(), "save_checkpoint", "the model has no parameters");
  const Generator& gen = model.dropout_generator();
  const std::map<std::string, std::string> metadata = {
      {"format", "dssm"},
      {"dtype", std::string(dtype_name(params.front().tensor.dtype()))},
      {"dropout_seed", std::to_string(gen.seed())},
      {"dropout_offset", std::to_string(gen.offset())}};
  nn::save_safetensors((fs::path(dir) / kWeightsFile).string(), model.state_dict(), metadata);
  write_text_atomically((fs::path(dir) / kConfigFile).string(),
                        model.config().to_json().dump(2) + "\n");
}

void load_weights(LanguageModel& model, const std::string& safetensors_path) {
  apply(model, nn::load_safetensors(safetensors_path), safetensors_path);
}

std::unique_ptr<LanguageModel> load_checkpoint(const std::string& dir, Device device) {
  DSSM_CHECK(fs::is_directory(dir), "load_checkpoint", "'{}' is not a directory", dir);
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  const std::string weights_path = (fs::path(dir) / kWeightsFile).string();
  std::unique_ptr<LanguageModel> model = make_model(read_config(config_path), 0);
  // The dtype the weights were saved in (written by save_checkpoint; else the first tensor's).
  const nn::SafetensorsContents file = nn::load_safetensors(weights_path);
  DType dtype = DType::f32;
  if (file.metadata.count("dtype")) {
    dtype = dtype_from_name(file.metadata.at("dtype"));
  } else if (!file.tensors.empty()) {
    dtype = file.tensors.begin()->second.dtype();
  }
  model->to(dtype);
  apply(*model, file, weights_path);
  model->to(device);
  return model;
}

}  // namespace dssm::models
