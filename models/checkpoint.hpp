// Model checkpoints: a directory holding
//   config.json        the model's config (ModelConfig::to_json), enough to rebuild it with
//                      make_model
//   model.safetensors  every parameter under its module path (nn::Module::state_dict names,
//                      e.g. "layers.3.mixer.in_proj.weight"), in the parameters' dtype; metadata
//                      "dtype" (that dtype) and "dropout_seed"/"dropout_offset" (the model's
//                      dropout generator, so training resumes the same masks)
// The tensors of each model family and their shapes are listed in docs/checkpoints.md.
#pragma once

#include <memory>
#include <string>

#include "models/language_model.hpp"

namespace dssm::models {

// Writes `dir`/config.json and `dir`/model.safetensors (each atomically), creating `dir`.
void save_checkpoint(const std::string& dir, LanguageModel& model);

// Rebuilds the model from `dir`/config.json, converts it to the checkpoint's dtype and loads its
// weights bit-exactly, then moves it to `device`.
std::unique_ptr<LanguageModel> load_checkpoint(const std::string& dir,
                                               Device device = Device::cpu());

// Loads a safetensors file into an existing model. Every tensor must be present, expected, of
// the model's shape and of the model's dtype; otherwise one dssm::Error names the file and
// lists every offending tensor.
void load_weights(LanguageModel& model, const std::string& safetensors_path);

}  // namespace dssm::models
