// dssm init --config configs/mamba-tiny.json --out checkpoints/mamba-tiny [--seed 0]
// Builds the model of a config with freshly initialised weights and writes it as a checkpoint
// directory (config.json + model.safetensors, models/checkpoint.hpp): a starting point for
// `dssm generate`, tests and demos.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "models/checkpoint.hpp"
#include "tensor/error.hpp"
#include "tools/cli/commands.hpp"

namespace dssm::cli {
namespace {

struct Options {
  std::string config;
  std::string out;
  uint64_t seed = 0;
};

void run(const Options& options) {
  std::ifstream file(options.config);
  DSSM_CHECK(file.good(), "init", "cannot open config '{}'", options.config);
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(file);
  } catch (const nlohmann::json::parse_error& e) {
    fail("init", "'{}' is not valid JSON: {}", options.config, e.what());
  }
  const auto model = models::make_model(config, options.seed);
  models::save_checkpoint(options.out, *model);
  fmt::print("{}: {} with {} parameters (seed {}) -> {}\n", options.config, model->config().arch,
             model->num_parameters(), options.seed, options.out);
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Write a freshly initialised checkpoint of a config");
  auto options = std::make_shared<Options>();
  cmd->add_option("--config", options->config, "model config (configs/*.json)")->required();
  cmd->add_option("--out", options->out, "checkpoint directory to write")->required();
  cmd->add_option("--seed", options->seed, "initialisation seed")->capture_default_str();
  cmd->callback([options] { run(*options); });
}

}  // namespace dssm::cli
