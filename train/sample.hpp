// Sampling a continuation from a language model, one token at a time through its recurrent
// form (LanguageModel::step): the prompt is fed first, then each drawn token is fed back.
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
