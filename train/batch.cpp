#include "train/batch.hpp"

#include "ops/cross_entropy.hpp"
#include "tensor/error.hpp"

namespace dssm::train {

Batch make_batch(const std::vector<int32_t>& windows, int64_t batch, int64_t seq_len,
                 Device device) {
  DSSM_CHECK(static_cast<int64_t>(windows.size()) == batch * (seq_len + 1), "make_batch",
             "expected {} x {} tokens, got {}", batch, seq_len + 1, windows.size());
  const Tensor all = Tensor::from_vector(windows, {batch, seq_len + 1});
  return {.inputs = all.narrow(1, 0, seq_len).contiguous().to(device),
          .targets = all.narrow(1, 1, seq_len).contiguous().reshape({batch * seq_len}).to(device)};
}

Tensor language_model_loss(models::LanguageModel& model, const Batch& batch) {
  const Tensor logits = model.forward(batch.inputs);
  const int64_t vocab = logits.size(-1);
  return cross_entropy(logits.reshape({batch.tokens(), vocab}), batch.targets);
}

}  // namespace dssm::train
