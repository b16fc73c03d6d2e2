// How much arithmetic a training step does, for MFU (model FLOPs utilisation): achieved
// FLOP/s over the hardware's peak.
#pragma once

#include "models/language_model.hpp"

namespace dssm::train {

// Training FLOPs per token: 6 per weight that multiplies an activation (2 forward, 4 backward;
// Kaplan et al. 2020), i.e. every parameter but an input embedding table that is only looked up
// (one tied to the LM head, as in Mamba, is a GEMM weight too). The sequence-mixing terms
// (retention, scans) are left out, so MFU is a slight underestimate.
double flops_per_token(const models::LanguageModel& model);

}  // namespace dssm::train
