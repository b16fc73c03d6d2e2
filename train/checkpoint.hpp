// The trainer's checkpoints: everything a run needs to continue exactly where it was.
//
//   <out>/checkpoints/step-00001200/
//     config.json, model.safetensors   the model (models/checkpoint.hpp), f32 weights: a model
//                                      directory that `dssm eval` and `dssm generate` read as is
//     optimizer.safetensors            AdamW's moments "exp_avg.<name>", "exp_avg_sq.<name>";
//                                      metadata "steps" (the optimizer's t)
//     trainer.json                     the step, the run config, the data cursor, the random
//                                      generators, the LR schedule, tokens seen, time spent
//
//   <out>/latest -> checkpoints/step-00001200   a symbolic link to the newest checkpoint
//
// A checkpoint is written into <out>/checkpoints/.partial-step-00001200/, every file synced to
// disk, and only then renamed to its final name. A write that fails (a full disk, an unwritable
// directory) or is killed midway therefore never touches the checkpoints already there: the
// newest complete one stays loadable. After a successful write only the newest `keep` remain.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/adamw.hpp"

namespace dssm::train {

struct TrainerState {
  int64_t step = 0;             // optimizer steps completed
  nlohmann::json run_config;    // RunConfig::to_json()
  nlohmann::json data_cursor;   // data::to_json(WindowSampler::cursor())
  uint64_t dropout_seed = 0;    // the model's dropout generator (also in the model's
  uint64_t dropout_offset = 0;  //   safetensors metadata)
  nlohmann::json lr_schedule;   // the schedule's parameters and the next step's lr
  int64_t tokens_seen = 0;
  double elapsed_s = 0.0;
  int64_t bad_steps_in_row = 0;  // the NaN guard's count

  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& json, const std::string& where);
};

// Writes the checkpoint of state.step and returns its directory. `write_model(dir)` writes
// the model's files into dir. Throws dssm::Error (naming the file and the reason) when any
// write fails; the existing checkpoints are then untouched.
std::string save_training_checkpoint(const std::string& out_dir, const TrainerState& state,
                                     const AdamW& optimizer,
                                     const std::function<void(const std::string&)>& write_model,
                                     int64_t keep);

// The complete checkpoints under <out>/checkpoints, oldest first.
std::vector<std::string> list_checkpoints(const std::string& out_dir);
// The newest of them, "" when there is none.
std::string latest_checkpoint(const std::string& out_dir);

TrainerState read_trainer_state(const std::string& checkpoint_dir);
void load_optimizer_state(AdamW& optimizer, const std::string& checkpoint_dir);

}  // namespace dssm::train
