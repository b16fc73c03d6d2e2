#include "train/sample.hpp"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.hpp"
#include "tensor/error.hpp"

namespace dssm::train {
namespace {

// An index drawn from softmax(logits / temperature), or the argmax when temperature is 0.
int32_t draw(const std::vector<float>& logits, double temperature, Generator& gen) {
  const auto best = std::max_element(logits.begin(), logits.end());
  if (temperature <= 0) return static_cast<int32_t>(best - logits.begin());
  std::vector<double> weights(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    weights[i] = std::exp((logits[i] - *best) / temperature);
    total += weights[i];
  }
  double u = uniform_f64(philox4x32_10(gen.seed(), gen.advance(1))) * total;
  for (size_t i = 0; i < weights.size(); ++i) {
    u -= weights[i];
    if (u < 0) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(best - logits.begin());
}

}  // namespace

std::vector<int32_t> sample_continuation(models::LanguageModel& model,
                                         const std::vector<int32_t>& prompt, int64_t count,
                                         double temperature, Generator& gen) {
  DSSM_CHECK(!prompt.empty(), "sample", "the prompt must hold at least one token");
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const Device device = model.parameters().front().device();
  std::unique_ptr<models::State> state = model.new_state(1);
  const auto feed = [&](int32_t token) {
    const Tensor ids = Tensor::from_vector(std::vector<int32_t>{token}, {1}).to(device);
    return model.step(ids, *state).to_vector<float>();
  };
  const auto length = static_cast<int64_t>(prompt.size());
  std::vector<float> logits =
      model.prefill(Tensor::from_vector(prompt, {1, length}).to(device), *state).to_vector<float>();
  std::vector<int32_t> out;
  for (int64_t i = 0; i < count; ++i) {
    out.push_back(draw(logits, temperature, gen));
    if (i + 1 < count) logits = feed(out.back());
  }
  model.train(was_training);
  return out;
}

}  // namespace dssm::train
