#include "train/accumulate.hpp"

#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

namespace dssm::train {

double accumulate_gradients(models::LanguageModel& model, MasterWeights& weights,
                            const std::vector<Batch>& micro_batches) {
  DSSM_CHECK(!micro_batches.empty(), "accumulate_gradients", "expected at least one micro-batch");
  const double scale = 1.0 / static_cast<double>(micro_batches.size());
  double mean_loss = 0.0;
  for (const Batch& batch : micro_batches) {
    const Tensor loss = language_model_loss(model, batch);
    (loss * scale).backward();
    mean_loss += loss.item() * scale;
    weights.accumulate_gradients();  // bf16: into the f32 masters
  }
  return mean_loss;
}

}  // namespace dssm::train
