// Parallel prefill (LanguageModel::prefill) against plain recurrent steps, for every model of
// configs/*-tiny.json in f64: the logits of the prompt's last token, the carried state tensor by
// tensor, and the logits of the steps that follow; prompts continuing a non-fresh state (the
// retention models and LLaMA) and the error Mamba gives instead; retention_final_state against
// a loop of retention_step.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "autograd/grad_mode.hpp"
#include "models/llama.hpp"
#include "models/mamba.hpp"
#include "models/retnet.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/retention.hpp"
#include "tensor/error.hpp"
#include "train/sample.hpp"

using namespace dssm;
using namespace dssm::models;
using nlohmann::json;

namespace {

json tiny_config(const std::string& name) {
  std::ifstream file(std::string(DSSM_TEST_DATA_DIR) + "/../../configs/" + name + ".json");
  REQUIRE(file.good());
  return json::parse(file);
}

// The tiny configs, plus the retention forms and the DenseMamba variant they do not select.
std::vector<json> configs_under_test() {
  std::vector<json> configs;
  for (const char* name :
       {"densretnet-tiny", "retnet-tiny", "llama-tiny", "mamba-tiny", "densemamba-tiny"}) {
    configs.push_back(tiny_config(name));
  }
  configs.push_back(tiny_config("densretnet-tiny"));
  configs.back()["retention_form"] = "parallel";
  configs.push_back(tiny_config("retnet-tiny"));
  configs.back()["retention_form"] = "recurrent";
  configs.push_back(tiny_config("densemamba-tiny"));
  configs.back()["dense_variant"] = "input";
  return configs;
}

// f64; the dense gates (xavier gain 2^-2.5 at init, a tiny term) scaled up so the dense
// connections weigh as much as the rest.
std::unique_ptr<LanguageModel> build(const json& config) {
  auto model = make_model(config, 7);
  model->to(DType::f64);
  NoGradGuard no_grad;
  for (const auto& p : model->named_parameters()) {
    if (p.name.find("gates.") != std::string::npos) p.tensor.copy_from(p.tensor * 6.0);
  }
  model->eval();
  return model;
}

Tensor random_ids(Generator& gen, const Shape& shape, int64_t vocab) {
  std::vector<int64_t> ids;
  for (double u : Tensor::rand(shape, gen, DType::f64).to_vector<double>()) {
    ids.push_back(static_cast<int64_t>(u * static_cast<double>(vocab)));
  }
  return Tensor::from_vector(ids, shape);
}

// Every tensor a state carries, in a fixed order.
std::vector<Tensor> state_tensors(State& state) {
  if (auto* s = dynamic_cast<RetentionState*>(&state)) return s->layers;
  if (auto* s = dynamic_cast<KVCacheState*>(&state)) {
    std::vector<Tensor> out = s->keys;
    out.insert(out.end(), s->values.begin(), s->values.end());
    return out;
  }
  std::vector<Tensor> out;
  for (const MixerState& layer : dynamic_cast<MambaState&>(state).layers) {
    out.push_back(layer.conv);
    out.push_back(layer.ssm);
  }
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

void check_same_state(State& prefilled, State& stepped) {
  CHECK(prefilled.position == stepped.position);
  const std::vector<Tensor> a = state_tensors(prefilled), b = state_tensors(stepped);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("state tensor " << i << ": " << describe(a[i]));
    CHECK(a[i].dtype() == b[i].dtype());
    CHECK(max_abs_diff(a[i], b[i]) < 1e-9);
  }
}

// Steps the tokens ids[:, from .. to) one by one; the logits of the last.
Tensor step_through(LanguageModel& model, const Tensor& ids, int64_t from, int64_t to,
                    State& state) {
  Tensor logits;
  for (int64_t t = from; t < to; ++t) logits = model.step(ids.select(1, t).contiguous(), state);
  return logits;
}

// Steps ids[:, from .. end) after both states, checking the logits agree at every token.
void check_steps_agree(LanguageModel& model, const Tensor& ids, int64_t from, State& a, State& b) {
  for (int64_t t = from; t < ids.size(1); ++t) {
    const Tensor token = ids.select(1, t).contiguous();
    const Tensor la = model.step(token, a), lb = model.step(token, b);
    INFO("step at position " << t);
    CHECK(max_abs_diff(la, lb) < 1e-9);
  }
}

}  // namespace

TEST_CASE("prefill of T tokens then k steps equals T + k steps, state included", "[generation]") {
  Generator gen(41);
  NoGradGuard no_grad;
  for (const json& config : configs_under_test()) {
    INFO(config.dump());
    auto model = build(config);
    const int64_t V = model->config().vocab_size;
    // 37 tokens: past one 32-token chunk and not a multiple of it; then 5 steps.
    for (const int64_t length : {int64_t{37}, int64_t{2}}) {
      INFO("prompt of " << length << " tokens");
      const Tensor ids = random_ids(gen, {2, length + 5}, V);
      auto stepped = model->new_state(2);
      const Tensor stepped_logits = step_through(*model, ids, 0, length, *stepped);
      auto prefilled = model->new_state(2);
      const Tensor prefill_logits = model->prefill(ids.narrow(1, 0, length), *prefilled);
      CHECK(prefill_logits.shape() == Shape{2, V});
      CHECK(max_abs(stepped_logits) > 1e-3);  // the comparison is not between zeros
      CHECK(max_abs_diff(prefill_logits, stepped_logits) < 1e-9);
      check_same_state(*prefilled, *stepped);
      check_steps_agree(*model, ids, length, *prefilled, *stepped);
      check_same_state(*prefilled, *stepped);
    }
  }
}

TEST_CASE("prefill continues a non-fresh state (retention models, LLaMA)", "[generation]") {
  Generator gen(42);
  NoGradGuard no_grad;
  for (const json& config : configs_under_test()) {
    const std::string arch = config["arch"];
    if (arch == "mamba" || arch == "densemamba") continue;
    INFO(config.dump());
    auto model = build(config);
    const Tensor ids = random_ids(gen, {2, 80}, model->config().vocab_size);
    auto stepped = model->new_state(2);
    const Tensor expected = step_through(*model, ids, 0, 75, *stepped);
    // 3 steps, a prompt at position 3, another at 40 (after a prefill): 75 tokens in all.
    auto mixed = model->new_state(2);
    step_through(*model, ids, 0, 3, *mixed);
    model->prefill(ids.narrow(1, 3, 37), *mixed);
    const Tensor logits = model->prefill(ids.narrow(1, 40, 35), *mixed);
    CHECK(max_abs_diff(logits, expected) < 1e-9);
    check_same_state(*mixed, *stepped);
    check_steps_agree(*model, ids, 75, *mixed, *stepped);
  }
}

TEST_CASE("prefill: Mamba takes only a fresh state; bad ids and foreign states are rejected",
          "[generation]") {
  NoGradGuard no_grad;
  auto mamba = build(tiny_config("densemamba-tiny"));
  auto state = mamba->new_state(1);
  mamba->step(Tensor::from_vector<int64_t>({3}, {1}), *state);
  CHECK_THROWS_WITH(mamba->prefill(Tensor::from_vector<int64_t>({1, 2}, {1, 2}), *state),
                    Catch::Contains("MambaModel::prefill") && Catch::Contains("fresh state") &&
                        Catch::Contains("at 1"));
  CHECK_THROWS_WITH(mamba->prefill(Tensor::from_vector<int64_t>({1, 2}, {2, 1}), *state),
                    Catch::Contains("expected ids [1, length]"));
  auto retnet = build(tiny_config("retnet-tiny"));
  auto llama = build(tiny_config("llama-tiny"));
  CHECK_THROWS_WITH(retnet->prefill(Tensor::from_vector<int64_t>({1}, {1}), *retnet->new_state(1)),
                    Catch::Contains("RetNet::prefill") && Catch::Contains("[batch, length]"));
  CHECK_THROWS_WITH(llama->prefill(Tensor::from_vector<int64_t>({1}, {1, 1}), *state),
                    Catch::Contains("Llama::prefill") && Catch::Contains("new_state"));
  CHECK_THROWS_WITH(
      retnet->prefill(Tensor::from_vector<int64_t>({1, 2}, {2, 1}), *retnet->new_state(1)),
      Catch::Contains("holds 1 sequences"));
  CHECK_THROWS_WITH(mamba->prefill(Tensor::from_vector<int64_t>({1}, {1, 1}), *llama->new_state(1)),
                    Catch::Contains("this model's new_state"));
}

TEST_CASE("retention_final_state equals the state after retention_step token by token",
          "[generation]") {
  Generator gen(43);
  const int64_t B = 2, H = 3, T = 9, dk = 4, dv = 5;
  const Tensor k = Tensor::randn({B, H, T, dk}, gen, DType::f64);
  const Tensor v = Tensor::randn({B, H, T, dv}, gen, DType::f64);
  const Tensor q = Tensor::randn({B, H, T, dk}, gen, DType::f64);
  const Tensor start = Tensor::randn({B, H, dk, dv}, gen, DType::f64);
  RetentionOptions fast;  // decays far from 1, so gamma^T S_0 is not close to S_0
  fast.gammas = Tensor::from_vector<double>({0.5, 0.8, 1.0}, {H});
  for (const RetentionOptions& options : {RetentionOptions{}, fast}) {
    Tensor state = start;
    for (int64_t t = 0; t < T; ++t) {
      state = retention_step(q.select(2, t), k.select(2, t), v.select(2, t), state, 4 + t, options)
                  .state;
    }
    CHECK(max_abs_diff(retention_final_state(k, v, start, options), state) < 1e-12);
    Tensor from_zero = Tensor::zeros({B, H, dk, dv}, DType::f64);
    for (int64_t t = 0; t < T; ++t) {
      from_zero =
          retention_step(q.select(2, t), k.select(2, t), v.select(2, t), from_zero, t, options)
              .state;
    }
    CHECK(max_abs_diff(retention_final_state(k, v, Tensor(), options), from_zero) < 1e-12);
  }
  CHECK_THROWS_WITH(retention_final_state(k, v, Tensor::zeros({B, H, dv, dk}, DType::f64)),
                    Catch::Contains("retention_final_state") &&
                        Catch::Contains("expected initial_state of shape [2, 3, 4, 5]"));
  CHECK_THROWS_WITH(retention_final_state(k, v.narrow(2, 0, 4)),
                    Catch::Contains("retention_final_state"));
}

TEST_CASE("sample_continuation (prefill, then steps) is greedy decoding by steps alone",
          "[generation]") {
  Generator gen(44);
  for (const char* name : {"densretnet-tiny", "densemamba-tiny", "llama-tiny"}) {
    INFO(name);
    auto model = build(tiny_config(name));
    const Tensor prompt = random_ids(gen, {1, 12}, model->config().vocab_size);
    std::vector<int32_t> expected;
    {
      NoGradGuard no_grad;
      auto state = model->new_state(1);
      Tensor logits = step_through(*model, prompt, 0, 12, *state);
      for (int t = 0; t < 6; ++t) {
        expected.push_back(static_cast<int32_t>(argmax(logits, -1).item()));
        logits =
            model->step(Tensor::from_vector(std::vector<int32_t>{expected.back()}, {1}), *state);
      }
    }
    const auto ids = prompt.to_vector<int64_t>();
    Generator sampling(0);
    CHECK(train::sample_continuation(*model, std::vector<int32_t>(ids.begin(), ids.end()), 6, 0.0,
                                     sampling) == expected);
  }
}
