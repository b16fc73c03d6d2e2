// DenseRetNet, RetNet and LLaMA: the parallel forward against token-by-token step, the three
// retention forms against each other, DenseRetNet reducing to its non-dense twin, end-to-end
// gradients against finite differences, a tiny DenseRetNet overfitting a fixed batch, configs.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/grad_mode.hpp"
#include "models/llama.hpp"
#include "models/retnet.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

using namespace dssm;
using namespace dssm::models;
using nlohmann::json;

namespace {

json tiny(const std::string& arch) {
  json j = {{"arch", arch}, {"vocab_size", 23}, {"d_model", 32}, {"n_layers", 4}, {"n_heads", 2}};
  if (arch == "densretnet") j.update({{"qk_dim", 16}, {"v_dim", 24}, {"dense_gate_hidden", 3}});
  if (arch == "retnet") j.update({{"qk_dim", 16}, {"v_dim", 24}, {"ffn_dim", 40}});
  if (arch == "llama") j.update({{"ffn_dim", 40}});
  return j;
}

std::unique_ptr<LanguageModel> build(const json& config, uint64_t seed = 5,
                                     DType dtype = DType::f64) {
  auto model = make_model(config, seed);
  model->to(dtype);
  return model;
}

Tensor random_ids(Generator& gen, const Shape& shape, int64_t vocab) {
  std::vector<int64_t> ids;
  for (double u : Tensor::rand(shape, gen, DType::f64).to_vector<double>()) {
    ids.push_back(static_cast<int64_t>(u * static_cast<double>(vocab)));
  }
  return Tensor::from_vector(ids, shape);
}

// Feeds ids [B, T] through step one token at a time; the logits laid out as forward's [B, T, V].
std::vector<double> stepwise_logits(LanguageModel& model, const Tensor& ids) {
  NoGradGuard no_grad;
  const int64_t B = ids.size(0), T = ids.size(1), V = model.config().vocab_size;
  auto state = model.new_state(B);
  std::vector<double> out(B * T * V);
  for (int64_t t = 0; t < T; ++t) {
    const auto logits = model.step(ids.select(1, t).contiguous(), *state).to_vector<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < V; ++v) out[(b * T + t) * V + v] = logits[b * V + v];
  }
  CHECK(state->position == T);
  return out;
}

std::vector<double> forward_logits(LanguageModel& model, const Tensor& ids) {
  NoGradGuard no_grad;
  return model.forward(ids).to_vector<double>();
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

Tensor lm_loss(LanguageModel& model, const Tensor& ids, const Tensor& targets) {
  const Tensor logits = model.forward(ids);
  const int64_t V = logits.size(2);
  return cross_entropy(logits.reshape({ids.numel(), V}), targets.reshape({ids.numel()}));
}

}  // namespace

TEST_CASE("DenseRetNet, RetNet, LLaMA: parallel forward equals token-by-token step", "[models]") {
  Generator gen(31);
  for (const std::string arch : {"densretnet", "retnet", "llama"}) {
    INFO(arch);
    auto model = build(tiny(arch));
    const Tensor ids = random_ids(gen, {2, 11}, 23);
    const auto parallel = forward_logits(*model, ids);
    CHECK(max_abs_diff(parallel, stepwise_logits(*model, ids)) < 1e-9);
    double spread = 0;
    for (double v : parallel) spread = std::max(spread, std::abs(v));
    CHECK(spread > 1e-3);  // the comparison is not between zeros
  }
}

TEST_CASE("DenseRetNet ablation variants: parallel forward equals step", "[models]") {
  Generator gen(37);
  const std::vector<json> variants = {
      {{"dense_fusion", "concat"}, {"dense_projection", "linear"}},
      {{"dense_select", "linear"}, {"dense_shared", false}, {"dense_m", 4}},
      {{"dense_select", "none"}, {"dense_every", 2}, {"dense_norm", false}},
  };
  for (const json& variant : variants) {
    INFO(variant.dump());
    json config = tiny("densretnet");
    config.update(variant);
    auto model = build(config);
    const Tensor ids = random_ids(gen, {2, 7}, 23);
    CHECK(max_abs_diff(forward_logits(*model, ids), stepwise_logits(*model, ids)) < 1e-9);
  }
}

TEST_CASE("DenseRetNet and RetNet: chunkwise and recurrent forms equal the parallel form",
          "[models]") {
  Generator gen(32);
  for (const std::string arch : {"densretnet", "retnet"}) {
    INFO(arch);
    json config = tiny(arch);
    const Tensor ids = random_ids(gen, {2, 13}, 23);
    const auto parallel = forward_logits(*build(config), ids);
    for (int64_t chunk : {1, 4, 5, 32}) {
      config["retention_form"] = "chunkwise";
      config["chunk_size"] = chunk;
      CHECK(max_abs_diff(parallel, forward_logits(*build(config), ids)) < 1e-9);
    }
    config["retention_form"] = "recurrent";
    CHECK(max_abs_diff(parallel, forward_logits(*build(config), ids)) < 1e-9);
  }
}

TEST_CASE("DenseRetNet with m = 0 or zero gates is the non-dense model with the same weights",
          "[models]") {
  Generator gen(33);
  const Tensor ids = random_ids(gen, {2, 9}, 23);
  json plain_config = tiny("densretnet");
  plain_config["dense_projection"] = "none";
  auto plain = build(plain_config);
  const auto plain_logits = forward_logits(*plain, ids);

  // m = 0: no dense term, no dense parameters; the weights of the plain model fit exactly.
  json m0 = tiny("densretnet");
  m0["dense_m"] = 0;
  auto no_predecessors = build(m0, 77);
  CHECK(no_predecessors->num_parameters() == plain->num_parameters());
  no_predecessors->load_state_dict(plain->state_dict());
  CHECK(forward_logits(*no_predecessors, ids) == plain_logits);

  // Zero gates: silu(MLP(x)) = silu(0) = 0, so k' = k and v' = v (without the post-fusion norm,
  // which is a function of its own; see docs/models.md).
  json gated = tiny("densretnet");
  gated["dense_norm"] = false;
  auto dense = build(gated, 78);
  dense->load_state_dict(plain->state_dict(), false);
  CHECK(forward_logits(*dense, ids) != plain_logits);
  int zeroed = 0;
  for (const auto& p : dense->named_parameters()) {
    if (p.name.find(".gates.0.fc2.") != std::string::npos) p.tensor.fill_(0.0), ++zeroed;
  }
  CHECK(zeroed == 2 * 3);  // k and v gates of layers 1, 2, 3
  CHECK(forward_logits(*dense, ids) == plain_logits);
}

TEST_CASE("end-to-end gradients of the LM loss match finite differences (f64)", "[models]") {
  Generator gen(34);
  for (const std::string arch : {"densretnet", "retnet", "llama"}) {
    INFO(arch);
    json config = tiny(arch);
    config["n_layers"] = 3;
    if (arch == "densretnet") config["dense_norm"] = true;
    auto model = build(config, 9);
    // Scale the weights up so that no parameter's gradient is tiny for lack of signal.
    for (const auto& p : model->named_parameters()) {
      NoGradGuard no_grad;
      p.tensor.copy_from(p.tensor * 3.0 + Tensor::randn(p.tensor.shape(), gen, DType::f64) * 0.05);
    }
    const Tensor ids = random_ids(gen, {2, 6}, 23), targets = random_ids(gen, {2, 6}, 23);
    model->zero_grad();
    lm_loss(*model, ids, targets).backward();
    int checked = 0;
    for (const auto& p : model->named_parameters()) {
      INFO(p.name);
      const Tensor grad = p.tensor.grad();
      REQUIRE(grad.defined());
      const auto analytic = grad.to_vector<double>();
      double* data = p.tensor.data<double>();
      for (int sample = 0; sample < 2; ++sample) {
        const auto i = static_cast<int64_t>(Tensor::rand({}, gen, DType::f64).item() *
                                            static_cast<double>(p.tensor.numel()));
        const double saved = data[i], eps = 1e-6;
        NoGradGuard no_grad;
        data[i] = saved + eps;
        const double up = lm_loss(*model, ids, targets).item();
        data[i] = saved - eps;
        const double down = lm_loss(*model, ids, targets).item();
        data[i] = saved;
        const double numeric = (up - down) / (2 * eps);
        CHECK(analytic[i] == Approx(numeric).margin(1e-8).epsilon(1e-5));
        ++checked;
      }
    }
    CHECK(checked == 2 * static_cast<int>(model->named_parameters().size()));
  }
}

TEST_CASE("a tiny DenseRetNet overfits a fixed batch of 64 tokens", "[models]") {
  Generator gen(35);
  json config = tiny("densretnet");
  config.update({{"vocab_size", 64},
                 {"d_model", 64},
                 {"qk_dim", 32},
                 {"v_dim", 128},
                 {"retention_form", "chunkwise"},
                 {"chunk_size", 16}});
  auto model = build(config, 3, DType::f32);
  const Tensor tokens = random_ids(gen, {2, 33}, 64);
  const Tensor ids = tokens.narrow(1, 0, 32).contiguous();
  const Tensor targets = tokens.narrow(1, 1, 32).contiguous();  // 64 next-token targets
  // A minimal Adam (Kingma & Ba 2015), betas (0.9, 0.98) as in the paper's recipe.
  const double lr = 3e-3, beta1 = 0.9, beta2 = 0.98, adam_eps = 1e-8;
  std::vector<Tensor> first, second;
  for (const Tensor& p : model->parameters()) {
    first.push_back(Tensor::zeros(p.shape()));
    second.push_back(Tensor::zeros(p.shape()));
  }
  double loss = 0;
  int step = 0;
  for (; step < 300; ++step) {
    model->zero_grad();
    const Tensor l = lm_loss(*model, ids, targets);
    loss = l.item();
    if (loss < 0.05) break;
    l.backward();
    NoGradGuard no_grad;
    const auto params = model->parameters();
    const double c1 = 1 - std::pow(beta1, step + 1), c2 = 1 - std::pow(beta2, step + 1);
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor g = params[i].grad();
      first[i].copy_from(first[i] * beta1 + g * (1 - beta1));
      second[i].copy_from(second[i] * beta2 + g * g * (1 - beta2));
      const Tensor update = (first[i] / c1) / (sqrt(second[i] / c2) + adam_eps);
      params[i].copy_from(params[i] - update * lr);
    }
  }
  INFO("loss " << loss << " after " << step << " steps");
  CHECK(loss < 0.05);
}

TEST_CASE("model configs: round trip, every problem listed with the valid choices", "[models]") {
  const DenseRetNetConfig dense = DenseRetNetConfig::from_json(tiny("densretnet"));
  CHECK(dense.dense.m == 2);
  CHECK(dense.dense.norm);
  CHECK(DenseRetNetConfig::from_json(dense.to_json()).to_json() == dense.to_json());
  const RetNetConfig retnet = RetNetConfig::from_json(tiny("retnet"));
  CHECK(RetNetConfig::from_json(retnet.to_json()).to_json() == retnet.to_json());
  const LlamaConfig llama = LlamaConfig::from_json(tiny("llama"));
  CHECK(LlamaConfig::from_json(llama.to_json()).to_json() == llama.to_json());

  json bad = tiny("densretnet");
  bad.update({{"dense_select", "attention"},
              {"qk_dim", 15},
              {"dropout", 1.5},
              {"retention_form", "fast"},
              {"heads", 2}});
  bad.erase("v_dim");
  try {
    make_model(bad, 0);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK_THAT(message, Catch::Contains("6 problems"));
    CHECK_THAT(message, Catch::Contains("'dense_select' must be one of \"none\", \"mlp\", "
                                        "\"linear\", got \"attention\""));
    CHECK_THAT(message, Catch::Contains("'qk_dim' (15) must be divisible by n_heads (2)"));
    CHECK_THAT(message, Catch::Contains("'dropout' must be in [0, 0.99], got 1.5"));
    CHECK_THAT(message, Catch::Contains("'retention_form' must be one of \"parallel\", "
                                        "\"chunkwise\", \"recurrent\""));
    CHECK_THAT(message, Catch::Contains("unknown key 'heads'"));
    CHECK_THAT(message, Catch::Contains("'v_dim' is required"));
  }
  json odd = tiny("llama");
  odd["n_heads"] = 32;  // d_head = 1: rotary needs pairs
  CHECK_THROWS_WITH(make_model(odd, 0), Catch::Contains("must be even"));
  CHECK_THROWS_WITH(make_model({{"arch", "gpt"}}, 0),
                    Catch::Contains("unknown arch \"gpt\"") && Catch::Contains("\"densretnet\""));
  CHECK_THROWS_WITH(make_model(json::array(), 0), Catch::Contains("needs \"arch\""));
  CHECK_THROWS_WITH(RetNetConfig::from_json(tiny("llama")),
                    Catch::Contains("'arch' must be \"retnet\""));
}

TEST_CASE("the shipped configs build; tiny ones run", "[models]") {
  const auto dir =
      std::filesystem::path(DSSM_TEST_DATA_DIR).parent_path().parent_path() / "configs";
  Generator gen(36);
  for (const std::string name : {"densretnet-tiny", "retnet-tiny", "llama-tiny"}) {
    INFO(name);
    std::ifstream file(dir / (name + ".json"));
    REQUIRE(file.good());
    auto model = make_model(json::parse(file), 1);
    const Tensor logits = model->forward(random_ids(gen, {1, 5}, model->config().vocab_size));
    CHECK(logits.shape() == Shape{1, 5, model->config().vocab_size});
  }
}

TEST_CASE("forward and step reject bad token ids and foreign states", "[models]") {
  auto retnet = build(tiny("retnet"));
  auto llama = build(tiny("llama"));
  CHECK_THROWS_WITH(retnet->forward(Tensor::from_vector<int64_t>({1, 23}, {1, 2})),
                    Catch::Contains("23"));
  CHECK_THROWS_WITH(retnet->forward(Tensor::ones({1, 2})),
                    Catch::Contains("RetNet::forward") && Catch::Contains("i64 or i32"));
  CHECK_THROWS_WITH(llama->forward(Tensor::from_vector<int64_t>({1, 2}, {2})),
                    Catch::Contains("[batch, length]"));
  NoGradGuard no_grad;
  auto llama_state = llama->new_state(1);
  CHECK_THROWS_WITH(retnet->step(Tensor::from_vector<int64_t>({1}, {1}), *llama_state),
                    Catch::Contains("new_state"));
  auto retnet_state = retnet->new_state(2);
  CHECK_THROWS_WITH(retnet->step(Tensor::from_vector<int64_t>({1}, {1}), *retnet_state),
                    Catch::Contains("holds 2 sequences"));
  CHECK_THROWS_WITH(llama->step(Tensor::from_vector<int64_t>({1, 2}, {2}), *llama_state),
                    Catch::Contains("holds 1 sequences"));
}
