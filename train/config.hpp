// The configuration of a training run: one JSON file (configs/*.json) with two sections,
//   {"model": {...what models::make_model reads...}, "train": {...the keys below...}}
// where "model" may instead name a model config file, relative to the run config's folder
// ("model": "densretnet-350m.json"); a bare model config (it has "arch") is a run with the
// default training settings.
// and `--set key=value` overrides from the command line. A key is a path into the file
// ("model.n_layers", "train.lr"); a bare key ("lr") means "train.<key>". The value is read as
// JSON when it parses (numbers, true, [0.9, 0.95]) and as a string otherwise.
//
// Every problem of both sections (unknown keys, values out of range, bad choices) is reported in
// one dssm::Error, with the valid range or choices of each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/language_model.hpp"
#include "tensor/dtype.hpp"
#include "train/adamw.hpp"
#include "train/schedule.hpp"

namespace dssm::train {

struct TrainConfig {
  uint64_t seed = 0;             // weights, data order and dropout all derive from it
  int64_t steps = 1000;          // optimizer steps
  int64_t seq_len = 2048;        // tokens per sequence (inputs; targets are shifted by one)
  int64_t batch_size = 256;      // sequences per optimizer step (the paper: 256 x 2048 = 0.5M)
  int64_t micro_batch_size = 8;  // sequences per forward/backward; batch_size / this = accumulation
  std::string schedule = "polynomial";
  double lr = 6e-4;
  double end_lr = 0.0;
  double warmup_ratio = 0.015;
  double power = 1.0;
  AdamWConfig adamw;                  // beta1, beta2, eps, weight_decay
  double grad_clip = 1.0;             // max global gradient norm; 0 turns clipping off
  DType dtype = DType::f32;           // compute dtype: f32, or bf16 with f32 master weights
  double validation_fraction = 0.01;  // of the documents, held out for validation
  bool bos_first = true;              // every sequence starts with <bos> (id 1), as in the paper
  int64_t log_every = 10;             // steps between progress lines
  int64_t eval_every = 100;           // steps between validation passes (0: only at the end)
  int64_t eval_batches = 8;           // micro-batches of validation windows per pass
  int64_t checkpoint_every = 500;     // steps between checkpoints (0: only at the end)
  int64_t keep_checkpoints = 2;       // the most recent ones kept
  int64_t max_bad_steps = 5;          // non-finite losses or norms in a row before giving up
  int64_t sample_tokens = 48;         // tokens generated at each eval (0: no samples)
  double sample_temperature = 0.8;
  std::string sample_prompt = "The";

  int64_t grad_accum_steps() const { return batch_size / micro_batch_size; }
  int64_t tokens_per_step() const { return batch_size * seq_len; }
  Schedule lr_schedule() const;
  nlohmann::json to_json() const;
};

// Reads the "train" section; throws one dssm::Error listing every problem.
TrainConfig read_train_config(const nlohmann::json& section);

// The whole file, with the overrides applied (in order). Checks the top-level keys and the
// "train" section; the "model" section is checked when the model is built.
struct RunConfig {
  nlohmann::json model;
  TrainConfig train;
  nlohmann::json to_json() const { return {{"model", model}, {"train", train.to_json()}}; }
};
nlohmann::json load_config_json(const std::string& path);  // throws naming the file
void apply_override(nlohmann::json& config, const std::string& assignment);
RunConfig read_run_config(const nlohmann::json& config);

// Reads the run config and builds its model (weights from train.seed), reporting the problems
// of both sections in one error.
struct Run {
  RunConfig config;
  std::unique_ptr<models::LanguageModel> model;
};
Run build_run(const nlohmann::json& config);

}  // namespace dssm::train
