// dssm train --config FILE [--set key=value ...] --data PATH... --out DIR
//            [--resume] [--force] [--device cpu|cuda[:N]] [--dtype f32|bf16] [--tokenizer FILE]
//            [--time-limit MINUTES] [--stop-after-steps N] [--peak-tflops X]
// Pretrains a language model (train/trainer.hpp); docs/training.md describes the run.
#include <fmt/format.h>

#include "tools/cli/commands.hpp"
#include "train/config.hpp"
#include "train/interrupt.hpp"
#include "train/trainer.hpp"

namespace dssm::cli {
namespace {

struct Options {
  std::string config;
  std::vector<std::string> overrides;
  std::vector<std::string> data;
  std::string out;
  bool resume = false;
  bool force = false;
  std::string device = "cpu";
  std::string dtype;
  std::string tokenizer;
  double time_limit_minutes = 0;
  int64_t stop_after_steps = 0;
  double peak_tflops = 790;
};

int run(const Options& options) {
  train::TrainOptions o;
  if (!options.config.empty()) o.config = train::load_config_json(options.config);
  o.overrides = options.overrides;
  if (!options.dtype.empty()) o.overrides.push_back("train.dtype=" + options.dtype);
  o.data = options.data;
  o.out_dir = options.out;
  o.resume = options.resume;
  o.force = options.force;
  o.device = Device::parse(options.device);
  o.tokenizer = options.tokenizer;
  o.time_limit_s = options.time_limit_minutes * 60;
  o.stop_after_steps = options.stop_after_steps;
  o.peak_tflops = options.peak_tflops;
  const train::TrainSummary summary = train::train(o);
  // Ctrl-C: the checkpoint is written; the conventional status of an interrupted program.
  return summary.stopped_early && train::StopRequestGuard::requested() ? 130 : 0;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("train", "Pretrain a language model from a config");
  cmd->add_option("--config", options->config,
                  "Run config: {\"model\": {...}, \"train\": {...}} (configs/*.json); optional "
                  "with --resume")
      ->check(CLI::ExistingFile);
  cmd->add_option(
      "--set", options->overrides,
      "Override a config value: key=value, e.g. lr=3e-4, model.n_layers=8 (repeatable)");
  cmd->add_option("--data", options->data, "Token shards: files, directories or globs")->required();
  cmd->add_option("--out", options->out, "Output directory: metrics.jsonl, loss.svg, checkpoints/")
      ->required();
  cmd->add_flag("--resume", options->resume, "Continue from the newest checkpoint in --out");
  cmd->add_flag("--force", options->force,
                "Delete the checkpoints of another run in --out and start afresh");
  cmd->add_option("--device", options->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", options->dtype, "Compute dtype (sets train.dtype): f32 or bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--tokenizer", options->tokenizer,
                  "Sentencepiece model for the samples printed at each eval")
      ->check(CLI::ExistingFile);
  cmd->add_option("--time-limit", options->time_limit_minutes,
                  "Stop with a checkpoint after this many minutes of training");
  cmd->add_option("--stop-after-steps", options->stop_after_steps,
                  "Stop with a checkpoint after this many steps of this invocation");
  cmd->add_option("--peak-tflops", options->peak_tflops,
                  "The GPU's peak TFLOP/s that MFU is measured against")
      ->capture_default_str();
  cmd->callback([options]() {
    const int code = run(*options);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace dssm::cli
