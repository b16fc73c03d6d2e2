// Sampling a continuation from a language model: the prompt goes through its parallel form in
// one pass (LanguageModel::prefill), then each drawn token is fed back through the recurrent
// form (LanguageModel::step).
#pragma once

#include <cstdint>
#include <vector>

#include "models/language_model.hpp"
#include "tensor/random.hpp"

namespace dssm::train {

// `count` tokens drawn from softmax(logits / temperature) (the most likely token when
// temperature is 0), with uniforms from `gen`. The prompt must hold at least one token.
std::vector<int32_t> sample_continuation(models::LanguageModel& model,
                                         const std::vector<int32_t>& prompt, int64_t count,
                                         double temperature, Generator& gen);

}  // namespace dssm::train
