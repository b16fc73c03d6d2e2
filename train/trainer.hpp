// Pretraining a language model: the loop behind `dssm train`.
//
// One optimizer step (train/trainer.cpp, function train):
//   1. lr from the schedule (train/schedule.hpp)
//   2. k = batch_size / micro_batch_size micro-batches of windows from the sampler, each run
//      forward and backward, gradients accumulated in f32 (train/accumulate.hpp)
//   3. the global gradient norm; a non-finite loss or norm skips the update (the NaN guard)
//   4. AdamW with the clipping coefficient folded in (train/adamw.hpp, train/clip.hpp), and the
//      f32 masters copied back into a bf16 model (train/master_weights.hpp)
//   5. a line of metrics.jsonl; every log_every steps a progress line; every eval_every steps a
//      validation loss and a sample; every checkpoint_every steps a checkpoint and loss.svg
//
// The output directory holds metrics.jsonl, loss.svg and checkpoints/ (train/checkpoint.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/device.hpp"

namespace dssm::train {

struct TrainOptions {
  nlohmann::json config;               // {"model", "train"}; may be null with resume
  std::vector<std::string> overrides;  // "key=value", applied in order on top of config
  std::vector<std::string> data;       // shards, directories or globs (train/data)
  std::string out_dir;
  bool resume = false;  // continue from the newest checkpoint in out_dir
  bool force = false;   // start afresh in an out_dir that holds another run's checkpoints
  Device device = Device::cpu();
  std::string tokenizer;         // a sentencepiece model for the samples at evals ("": no samples)
  double peak_tflops = 790;      // what MFU is measured against (the H100's measured bf16 peak)
  double time_limit_s = 0;       // > 0: stop (with a checkpoint) once training took this long
  int64_t stop_after_steps = 0;  // > 0: stop (with a checkpoint) after this many steps here
  bool quiet = false;            // no progress lines (tests)
};

struct TrainSummary {
  int64_t first_step = 0;      // where this invocation started (0, or the resumed step)
  int64_t last_step = 0;       // steps completed in total
  std::vector<double> losses;  // the training loss of each step of this invocation
  double val_loss = 0.0;       // the last validation loss (NaN when none was computed)
  int64_t skipped_steps = 0;
  bool stopped_early = false;  // by Ctrl-C, the time limit or stop_after_steps
  std::string checkpoint;      // the last checkpoint written
};

TrainSummary train(const TrainOptions& options);

}  // namespace dssm::train
