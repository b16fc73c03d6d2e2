// dssm eval --checkpoint DIR --data PATH... [--split validation|train|all] [--seq-len L]
//           [--batch B] [--max-windows N] [--device cpu|cuda[:N]] [--json]
// The mean next-token loss, perplexity and number of tokens of a model on token shards
// (train/evaluate.hpp). A checkpoint written by `dssm train` supplies the run's sequence length,
// <bos> convention and validation split; a bare model directory uses the options' values.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cuda/backend.hpp"
#include "models/checkpoint.hpp"
#include "tools/cli/commands.hpp"
#include "train/checkpoint.hpp"
#include "train/config.hpp"
#include "train/data/token_dataset.hpp"
#include "train/data/window_sampler.hpp"
#include "train/evaluate.hpp"

namespace dssm::cli {
namespace {

struct Options {
  std::string checkpoint;
  std::vector<std::string> data;
  std::string split = "validation";
  int64_t seq_len = 0;
  int64_t batch = 8;
  int64_t max_windows = 0;
  std::string device = "cpu";
  bool json = false;
};

int run(const Options& options) {
  const Device device = Device::parse(options.device);
  if (device.is_cuda()) cuda::require_device(device.index);
  std::unique_ptr<models::LanguageModel> model =
      models::load_checkpoint(options.checkpoint, device);

  // The run's data settings, when the directory is a trainer's checkpoint.
  data::SamplerOptions sampling{.seq_len = 2048};
  const bool from_trainer =
      std::filesystem::exists(std::filesystem::path(options.checkpoint) / "trainer.json");
  if (from_trainer) {
    const train::TrainConfig run =
        train::read_run_config(train::read_trainer_state(options.checkpoint).run_config).train;
    sampling.seq_len = run.seq_len;
    sampling.validation_fraction = run.validation_fraction;
    sampling.bos_first = run.bos_first;
  }
  if (options.seq_len > 0) sampling.seq_len = options.seq_len;
  // "all": every document is evaluated (a validation fraction of 0 leaves the training split
  // whole; see train/data/window_sampler.hpp).
  if (options.split == "all") sampling.validation_fraction = 0;
  sampling.split = options.split == "validation" ? data::Split::validation : data::Split::train;

  const data::TokenDataset dataset =
      data::TokenDataset::open(options.data, {.vocab_size = model->config().vocab_size});
  const data::WindowSampler windows(dataset, sampling);
  const train::EvalResult r =
      train::evaluate(*model, windows, options.max_windows, options.batch, device);
  if (options.json) {
    fmt::print("{}\n",
               nlohmann::json{{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}}
                   .dump());
  } else {
    fmt::print(
        "{} on {} ({} split, sequences of {}): loss {:.4f} | perplexity {:.2f} | {} tokens\n",
        options.checkpoint, fmt::join(options.data, " "), options.split, sampling.seq_len, r.loss,
        r.perplexity, r.tokens);
  }
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("eval", "Loss and perplexity of a model on token shards");
  cmd->add_option("--checkpoint", options->checkpoint,
                  "A model directory (config.json + model.safetensors), e.g. a checkpoint of "
                  "dssm train")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", options->data, "Token shards: files, directories or globs")->required();
  cmd->add_option("--split", options->split,
                  "validation (the held-out documents), train, or all (every document)")
      ->check(CLI::IsMember({"validation", "train", "all"}))
      ->capture_default_str();
  cmd->add_option("--seq-len", options->seq_len,
                  "Tokens per window (default: the run's, else 2048)");
  cmd->add_option("--batch", options->batch, "Windows per forward pass")->capture_default_str();
  cmd->add_option("--max-windows", options->max_windows, "Evaluate at most this many windows");
  cmd->add_option("--device", options->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_flag("--json", options->json, "Print {\"loss\", \"perplexity\", \"tokens\"}");
  cmd->callback([options]() { run(*options); });
}

}  // namespace dssm::cli
