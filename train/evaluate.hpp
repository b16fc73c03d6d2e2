// Evaluation: the mean next-token loss of a model over a fixed set of windows, and its
// perplexity exp(loss). Used by the trainer's periodic validation and by `dssm eval`.
#pragma once

#include <cstdint>

#include "models/language_model.hpp"
#include "train/data/window_sampler.hpp"

namespace dssm::train {

struct EvalResult {
  double loss = 0.0;        // mean cross-entropy per target token, in nats
  double perplexity = 0.0;  // exp(loss)
  int64_t tokens = 0;       // target tokens evaluated
};

// The first `max_windows` windows of the sampler's split in stream order (all of them when
// max_windows <= 0 or the split has fewer), `batch` windows per forward, in eval mode without
// gradients. The model's train/eval mode is restored afterwards.
EvalResult evaluate(models::LanguageModel& model, const data::WindowSampler& windows,
                    int64_t max_windows, int64_t batch, Device device);

}  // namespace dssm::train
