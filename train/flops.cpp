#include "train/flops.hpp"

namespace dssm::train {

double flops_per_token(const models::LanguageModel& model) {
  const auto params = model.named_parameters();
  bool separate_head = false;
  for (const auto& p : params) separate_head |= p.name.starts_with("lm_head.");
  double weights = 0;
  for (const auto& p : params) {
    if (separate_head && p.name.starts_with("embed_tokens.")) continue;
    weights += static_cast<double>(p.tensor.numel());
  }
  return 6.0 * weights;
}

}  // namespace dssm::train
