#include "train/evaluate.hpp"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.hpp"
#include "tensor/error.hpp"
#include "train/batch.hpp"

namespace dssm::train {

EvalResult evaluate(models::LanguageModel& model, const data::WindowSampler& windows,
                    int64_t max_windows, int64_t batch, Device device) {
  DSSM_CHECK(batch > 0, "evaluate", "expected a positive batch size, got {}", batch);
  const int64_t available = windows.windows_per_epoch();
  const int64_t count = max_windows > 0 ? std::min(max_windows, available) : available;
  DSSM_CHECK(count > 0, "evaluate", "the split holds no window of {} tokens",
             windows.window_length());
  const int64_t length = windows.window_length();
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  double total = 0.0;  // summed loss over target tokens
  int64_t tokens = 0;
  for (int64_t first = 0; first < count; first += batch) {
    const int64_t rows = std::min(batch, count - first);
    std::vector<int32_t> ids(static_cast<size_t>(rows * length));
    for (int64_t r = 0; r < rows; ++r) windows.window(first + r, ids.data() + r * length);
    const Batch b = make_batch(ids, rows, length - 1, device);
    total += language_model_loss(model, b).item() * static_cast<double>(b.tokens());
    tokens += b.tokens();
  }
  model.train(was_training);
  const double loss = total / static_cast<double>(tokens);
  return {.loss = loss, .perplexity = std::exp(loss), .tokens = tokens};
}

}  // namespace dssm::train
