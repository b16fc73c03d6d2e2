// One batch of training windows as tensors, and the language-modelling loss on it.
// A window is seq_len + 1 tokens w[0..L]: the model reads w[0..L-1] and predicts w[1..L].
#pragma once

#include <cstdint>
#include <vector>

#include "models/language_model.hpp"
#include "tensor/tensor.hpp"

namespace dssm::train {

struct Batch {
  Tensor inputs;   // [B, L] i32
  Tensor targets;  // [B * L] i32
  int64_t tokens() const { return targets.numel(); }
};

// windows: B rows of L + 1 token ids, row-major (as WindowSampler::next_batch writes them).
Batch make_batch(const std::vector<int32_t>& windows, int64_t batch, int64_t seq_len,
                 Device device);

// The mean next-token cross-entropy of the model on the batch (a scalar, f32; f64 for an f64
// model), recorded for backward when gradients are on.
Tensor language_model_loss(models::LanguageModel& model, const Batch& batch);

}  // namespace dssm::train
