// dssm params --config configs/densretnet-350m.json
// Builds the model of a config and prints its parameter count per module, then the total. The
// layers are summed over all blocks, per sub-module ("layers.*.q_proj"), so a 25-layer model
// prints one line per kind of sub-module rather than one per block.
#include <fmt/format.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/language_model.hpp"
#include "tensor/error.hpp"
#include "tools/cli/commands.hpp"

namespace dssm::cli {
namespace {

// "layers.3.retention.q_proj.weight" -> "layers.*.retention"; "lm_head.weight" -> "lm_head".
std::string module_of(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
    parts.push_back(name.substr(start, dot - start));
    start = dot + 1;
  }
  if (parts.empty()) return name;
  if (parts[0] != "layers" || parts.size() < 2) return parts[0];
  return parts.size() == 2 ? "layers.*" : "layers.*." + parts[2];
}

std::string millions(int64_t count) {
  return fmt::format("{:.2f}M", count / 1e6);
}

int run(const std::string& config_path) {
  std::ifstream file(config_path);
  DSSM_CHECK(file.good(), "params", "cannot open config '{}'", config_path);
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(file);
  } catch (const nlohmann::json::parse_error& e) {
    fail("params", "'{}' is not valid JSON: {}", config_path, e.what());
  }
  const auto model = models::make_model(config, 0);
  std::vector<std::string> order;
  std::map<std::string, int64_t> counts;
  for (const auto& p : model->named_parameters()) {
    const std::string module = module_of(p.name);
    if (!counts.count(module)) order.push_back(module);
    counts[module] += p.tensor.numel();
  }
  fmt::print("{} ({}, {} layers)\n", config_path, model->config().arch, model->config().n_layers);
  for (const std::string& module : order) {
    fmt::print("  {:<28} {:>14} {:>10}\n", module, counts[module], millions(counts[module]));
  }
  const int64_t total = model->num_parameters();
  fmt::print("  {:<28} {:>14} {:>10}\n", "total", total, millions(total));
  return 0;
}

}  // namespace

void add_params_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("params", "Parameter count of a model config, per module");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--config", *path, "model config (configs/*.json)")->required();
  cmd->callback([path] {
    if (run(*path) != 0) throw CLI::RuntimeError(1);
  });
}

}  // namespace dssm::cli
