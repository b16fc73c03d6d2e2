// make_model: config["arch"] -> the model. One line per arch in kArchs; add a model there.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <functional>
#include <string>
#include <vector>

#include "models/language_model.hpp"
#include "models/llama.hpp"
#include "models/mamba.hpp"
#include "models/retnet.hpp"
#include "tensor/error.hpp"

namespace dssm::models {
namespace {

using Builder = std::function<std::unique_ptr<LanguageModel>(const nlohmann::json&, uint64_t)>;

// Reads the family's config (which checks every field) and builds the model from it.
template <typename Model, typename Config>
Builder builder() {
  return [](const nlohmann::json& json, uint64_t seed) -> std::unique_ptr<LanguageModel> {
    return std::make_unique<Model>(Config::from_json(json), seed);
  };
}

struct Arch {
  std::string name;
  Builder build;
};

const std::vector<Arch>& archs() {
  static const std::vector<Arch> kArchs = {
      {"densretnet", builder<DenseRetNet, DenseRetNetConfig>()},
      {"retnet", builder<RetNet, RetNetConfig>()},
      {"llama", builder<Llama, LlamaConfig>()},
      {"mamba", builder<MambaModel, MambaConfig>()},
      {"densemamba", builder<MambaModel, MambaConfig>()},
  };
  return kArchs;
}

}  // namespace

std::unique_ptr<LanguageModel> make_model(const nlohmann::json& config, uint64_t seed) {
  std::vector<std::string> names;
  for (const Arch& arch : archs()) names.push_back(arch.name);
  const auto it = config.is_object() ? config.find("arch") : config.end();
  DSSM_CHECK(it != config.end() && it->is_string(), "make_model",
             "the config needs \"arch\": one of \"{}\"", fmt::join(names, "\", \""));
  for (const Arch& arch : archs()) {
    if (arch.name == it->get<std::string>()) return arch.build(config, seed);
  }
  fail("make_model", "unknown arch \"{}\": expected one of \"{}\"", it->get<std::string>(),
       fmt::join(names, "\", \""));
}

}  // namespace dssm::models
