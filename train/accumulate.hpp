// Gradient accumulation: the micro-batches of one optimizer step, each run forward and backward
// with its loss scaled by 1/k, so that after k equal micro-batches the gradients are those of
// the mean loss over all of them, the same as one batch k times larger (up to rounding).
#pragma once

#include <vector>

#include "models/language_model.hpp"
#include "train/batch.hpp"
#include "train/master_weights.hpp"

namespace dssm::train {

// Adds the gradients of the micro-batches' mean loss into weights.parameters()' .grad (the
// masters'; see master_weights.hpp) and returns that mean loss.
double accumulate_gradients(models::LanguageModel& model, MasterWeights& weights,
                            const std::vector<Batch>& micro_batches);

}  // namespace dssm::train
