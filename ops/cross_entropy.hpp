// The language-model loss: mean over tokens of -log softmax(logits)[target].
#pragma once

#include <cstdint>

#include "tensor/tensor.hpp"

namespace dssm {

// logits [N, V] (floating), targets [N] (i32 or i64). Returns the scalar
//   loss = (1 / count) * sum_{n : t_n != ignore_index} (logsumexp(logits[n]) - logits[n, t_n]),
// count = the number of rows not ignored (loss 0 and a zero gradient when count is 0).
// The loss is in the compute type: f32 for f32 and bf16 logits, f64 for f64.
// Backward: dlogits[n] = (softmax(logits[n]) - onehot(t_n)) * g / count, 0 on ignored rows.
// A target outside [0, V) that is not ignore_index is an error naming its row.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace dssm
