// Mamba and DenseMamba: the parallel forward against the recurrent step and against a plain-loop
// reference that materialises every SSM state (the paper's definition, Eq. 15-17), DenseMamba
// reducing to Mamba, end-to-end gradients, and a tiny model overfitting a fixed batch.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "autograd/grad_mode.hpp"
#include "models/mamba.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"

using namespace dssm;
using namespace dssm::models;
using nlohmann::json;

namespace {

json tiny_config(const std::string& arch, const std::string& variant = "paper", int64_t m = 2) {
  json j = {{"arch", arch}, {"vocab_size", 19}, {"d_model", 8}, {"n_layers", 4},  {"d_state", 3},
            {"expand", 2},  {"d_conv", 4},      {"dt_rank", 2}, {"dt_min", 0.01}, {"dt_max", 0.5}};
  if (arch == "densemamba") {
    j["dense_variant"] = variant;
    j["dense_m"] = m;
    j["dense_gate_hidden"] = 3;
  }
  return j;
}

// The gates' init (xavier, gain 2^-2.5) makes the dense term tiny at first; tests scale the gate
// weights up so that the term they check weighs as much as the rest.
std::unique_ptr<MambaModel> tiny_model(const json& config, uint64_t seed, DType dtype) {
  auto model = std::make_unique<MambaModel>(MambaConfig::from_json(config), seed);
  model->to(dtype);
  NoGradGuard no_grad;
  for (const auto& p : model->named_parameters()) {
    if (p.name.find(".dense.gates.") != std::string::npos) p.tensor.copy_from(p.tensor * 6.0);
  }
  return model;
}

Tensor random_ids(Generator& gen, const Shape& shape, int64_t vocab) {
  const auto u = Tensor::rand(shape, gen, DType::f64).to_vector<double>();
  std::vector<int64_t> ids;
  for (double x : u) ids.push_back(static_cast<int64_t>(x * static_cast<double>(vocab)));
  return Tensor::from_vector(ids, shape);
}

// Runs `ids` [B, T] through step one token at a time; returns logits [B, T, V] as doubles.
std::vector<double> stepwise_logits(MambaModel& model, const Tensor& ids) {
  NoGradGuard no_grad;
  const int64_t B = ids.size(0), T = ids.size(1), V = model.config().vocab_size;
  auto state = model.new_state(B);
  std::vector<double> out(static_cast<size_t>(B * T * V));
  for (int64_t t = 0; t < T; ++t) {
    const auto logits = model.step(ids.select(1, t).contiguous(), *state).to_vector<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < V; ++v) out[(b * T + t) * V + v] = logits[b * V + v];
  }
  CHECK(state->position == T);
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// ---- a plain-loop reference of the whole model, materialising every SSM state ----------------

using Vec = std::vector<double>;

struct Weights {
  std::map<std::string, Tensor> state;
  Vec operator()(const std::string& name) const { return state.at(name).to_vector<double>(); }
  bool has(const std::string& name) const { return state.count(name) > 0; }
};

// y = W x, W [out, in] row-major.
Vec linear(const Vec& W, const Vec& x) {
  const size_t in = x.size(), out = W.size() / in;
  Vec y(out, 0.0);
  for (size_t o = 0; o < out; ++o)
    for (size_t i = 0; i < in; ++i) y[o] += W[o * in + i] * x[i];
  return y;
}
double silu(double x) {
  return x / (1.0 + std::exp(-x));
}
double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}
Vec rms_norm(const Vec& x, const Vec& w, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  const double scale = 1.0 / std::sqrt(ms / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
  return y;
}

// logits[b][t][v] following docs/models.md literally: h_t^l computed and stored for every layer,
// time and (channel, state); then h'_t^l = h_t^l + sum_i g_t ⊙ h_t^{l-i} (variant "paper") or
// x^l <- x^l + sum_i g ⊙ x^{l-i} (variant "input").
std::vector<double> reference_logits(const MambaModel& model, const Tensor& ids_tensor) {
  const MambaConfig& c = model.mamba_config();
  const Weights w{model.state_dict()};
  const int64_t B = ids_tensor.size(0), T = ids_tensor.size(1), V = c.vocab_size;
  const int64_t d = c.d_model, di = c.d_inner(), N = c.d_state, R = c.dt_rank, K = c.d_conv;
  const auto ids = ids_tensor.to_vector<int64_t>();
  const Vec E = w("embed_tokens.weight");
  const bool paper = c.dense_variant == "paper";
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Vec> h(T);  // residual stream
    for (int64_t t = 0; t < T; ++t)
      h[t] = Vec(E.begin() + ids[b * T + t] * d, E.begin() + (ids[b * T + t] + 1) * d);
    // states[l][t][c * N + n] and ssm inputs xs[l][t][c] (before fusion), kept for all layers.
    std::vector<std::vector<Vec>> states, inputs;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = fmt::format("layers.{}.mixer.", l);
      const int64_t m = c.dense ? nn::dense_inputs_of_layer(l, c.dense_options) : 0;
      const Vec norm_w = w(fmt::format("layers.{}.norm.weight", l));
      const Vec in_w = w(p + "in_proj.weight"), conv_w = w(p + "conv1d.weight"),
                conv_b = w(p + "conv1d.bias"), xp_w = w(p + "x_proj.weight"),
                dt_w = w(p + "dt_proj.weight"), dt_b = w(p + "dt_proj.bias"),
                A_log = w(p + "A_log"), D = w(p + "D"), out_w = w(p + "out_proj.weight");
      std::vector<Vec> xn(T), xs(T), zs(T), us(T);
      for (int64_t t = 0; t < T; ++t) {
        xn[t] = rms_norm(h[t], norm_w, c.norm_eps);
        const Vec xz = linear(in_w, xn[t]);
        xs[t] = Vec(xz.begin(), xz.begin() + di);
        zs[t] = Vec(xz.begin() + di, xz.end());
      }
      auto gate = [&](int64_t t) {  // silu(MLP(xn_t)), per channel
        Vec g = linear(w(p + "dense.gates.0.fc2.weight"), [&] {
          Vec a = linear(w(p + "dense.gates.0.fc1.weight"), xn[t]);
          for (double& v : a) v = silu(v);
          return a;
        }());
        for (double& v : g) v = silu(v);
        return g;
      };
      for (int64_t t = 0; t < T; ++t) {  // causal depthwise conv + silu
        us[t] = Vec(di);
        for (int64_t ch = 0; ch < di; ++ch) {
          double s = conv_b[ch];
          for (int64_t k = 0; k < K; ++k) {
            const int64_t src = t - (K - 1) + k;
            if (src >= 0) s += conv_w[ch * K + k] * xs[src][ch];
          }
          us[t][ch] = silu(s);
        }
      }
      inputs.push_back(us);
      if (m > 0 && !paper) {
        for (int64_t t = 0; t < T; ++t) {
          const Vec g = gate(t);
          for (int64_t i = 1; i <= m; ++i)
            for (int64_t ch = 0; ch < di; ++ch) us[t][ch] += g[ch] * inputs[l - i][t][ch];
        }
      }
      std::vector<Vec> layer_states(T);
      Vec state(di * N, 0.0);
      for (int64_t t = 0; t < T; ++t) {
        const Vec xd = linear(xp_w, us[t]);
        const Vec dt_raw(xd.begin(), xd.begin() + R);
        const Vec Bt(xd.begin() + R, xd.begin() + R + N), Ct(xd.begin() + R + N, xd.end());
        const Vec dt_lin = linear(dt_w, dt_raw);
        for (int64_t ch = 0; ch < di; ++ch) {
          const double dt = softplus(dt_lin[ch] + dt_b[ch]);
          for (int64_t n = 0; n < N; ++n) {
            const double A = -std::exp(A_log[ch * N + n]);
            state[ch * N + n] = std::exp(dt * A) * state[ch * N + n] + dt * Bt[n] * us[t][ch];
          }
        }
        layer_states[t] = state;
        Vec fused = state;  // h'_t = h_t + sum_i g_t ⊙ h_t^{l-i}
        if (m > 0 && paper) {
          const Vec g = gate(t);
          for (int64_t i = 1; i <= m; ++i)
            for (int64_t ch = 0; ch < di; ++ch)
              for (int64_t n = 0; n < N; ++n)
                fused[ch * N + n] += g[ch] * states[l - i][t][ch * N + n];
        }
        Vec y(di);
        for (int64_t ch = 0; ch < di; ++ch) {
          double s = D[ch] * us[t][ch];
          for (int64_t n = 0; n < N; ++n) s += Ct[n] * fused[ch * N + n];
          y[ch] = s * silu(zs[t][ch]);
        }
        const Vec o = linear(out_w, y);
        for (int64_t j = 0; j < d; ++j) h[t][j] += o[j];
      }
      states.push_back(layer_states);
    }
    for (int64_t t = 0; t < T; ++t) {
      const Vec logits = linear(E, rms_norm(h[t], w("norm.weight"), c.norm_eps));
      REQUIRE(static_cast<int64_t>(logits.size()) == V);
      out.insert(out.end(), logits.begin(), logits.end());
    }
  }
  return out;
}

// Cross-entropy of predicting ids[:, 1:] from ids[:, :-1].
Tensor next_token_loss(MambaModel& model, const Tensor& ids) {
  const int64_t B = ids.size(0), T = ids.size(1) - 1;
  const Tensor logits = model.forward(ids.narrow(1, 0, T).contiguous());
  return cross_entropy(logits.reshape({B * T, model.config().vocab_size}),
                       ids.narrow(1, 1, T).contiguous().reshape({B * T}));
}

}  // namespace

TEST_CASE("Mamba and DenseMamba: parallel forward equals the recurrent step", "[mamba]") {
  Generator gen(301);
  for (const json& config :
       {tiny_config("mamba"), tiny_config("densemamba", "paper"),
        tiny_config("densemamba", "input"), tiny_config("densemamba", "paper", 3)}) {
    INFO(config.dump());
    auto model = tiny_model(config, 7, DType::f64);
    const Tensor ids = random_ids(gen, {2, 11}, 19);
    const auto parallel = model->forward(ids).to_vector<double>();
    CHECK(max_abs_diff(parallel, stepwise_logits(*model, ids)) < 1e-9);
  }
}

TEST_CASE("Mamba and DenseMamba equal a reference that materialises every state", "[mamba]") {
  Generator gen(302);
  for (const json& config :
       {tiny_config("mamba"), tiny_config("densemamba", "paper"),
        tiny_config("densemamba", "input"), tiny_config("densemamba", "paper", 3)}) {
    INFO(config.dump());
    auto model = tiny_model(config, 8, DType::f64);
    const Tensor ids = random_ids(gen, {2, 9}, 19);
    CHECK(max_abs_diff(model->forward(ids).to_vector<double>(), reference_logits(*model, ids)) <
          1e-10);
  }
}

TEST_CASE("DenseMamba with m = 0 or zero gates is Mamba with the same weights", "[mamba]") {
  Generator gen(303);
  auto mamba = tiny_model(tiny_config("mamba"), 9, DType::f64);
  const Tensor ids = random_ids(gen, {2, 10}, 19);
  const auto expected = mamba->forward(ids).to_vector<double>();
  for (const std::string variant : {"paper", "input"}) {
    auto m0 = tiny_model(tiny_config("densemamba", variant, 0), 10, DType::f64);
    m0->load_state_dict(mamba->state_dict());  // strict: the same parameter names exactly
    CHECK(m0->forward(ids).to_vector<double>() == expected);

    auto gated = tiny_model(tiny_config("densemamba", variant, 2), 11, DType::f64);
    gated->load_state_dict(mamba->state_dict(), /*strict=*/false);
    // With its own random gates the dense term is far above rounding (logits are ~0.2 here).
    CHECK(max_abs_diff(gated->forward(ids).to_vector<double>(), expected) > 1e-4);
    int zeroed = 0;
    for (const auto& p : gated->named_parameters()) {
      if (p.name.find("dense.gates.0.fc2.weight") != std::string::npos)
        p.tensor.fill_(0.0), ++zeroed;
    }
    CHECK(zeroed == 3);  // layers 1, 2, 3
    // Equal up to rounding: the fused "paper" output reaches out_proj in another layout than
    // the scan's, so its GEMM sums in another order.
    CHECK(max_abs_diff(gated->forward(ids).to_vector<double>(), expected) < 1e-13);
    CHECK(stepwise_logits(*gated, ids) == stepwise_logits(*mamba, ids));
  }
}

TEST_CASE("Mamba and DenseMamba: end-to-end gradients match finite differences", "[mamba]") {
  std::mt19937 pick(304);
  Generator gen(304);
  // "paper" every other layer with m = 3 and linear projections: layer 0's states are read by
  // layer 2 but not by layer 1 (a handle nobody reads).
  json sparse = tiny_config("densemamba", "paper", 3);
  sparse["dense_every"] = 2;
  sparse["dense_projection"] = "linear";
  for (const json& config : {tiny_config("mamba"), tiny_config("densemamba", "paper"),
                             tiny_config("densemamba", "input"), sparse}) {
    INFO(config.dump());
    auto model = tiny_model(config, 12, DType::f64);
    const Tensor ids = random_ids(gen, {2, 7}, 19);
    model->zero_grad();
    next_token_loss(*model, ids).backward();
    std::set<std::string> kinds;  // every kind of parameter, e.g. "mixer.A_log"
    for (const auto& p : model->named_parameters()) {
      const std::string kind = p.name.substr(p.name.find_first_of('.') + 1);
      kinds.insert(kind.substr(kind.find_first_of('.') + 1));
      const Tensor grad = p.tensor.grad();
      REQUIRE(grad.defined());
      const auto analytic = grad.to_vector<double>();
      double* data = p.tensor.data<double>();
      for (int sample = 0; sample < 2; ++sample) {
        const size_t i = pick() % static_cast<size_t>(p.tensor.numel());
        const double saved = data[i], eps = 1e-6;
        NoGradGuard no_grad;
        data[i] = saved + eps;
        const double up = next_token_loss(*model, ids).item();
        data[i] = saved - eps;
        const double down = next_token_loss(*model, ids).item();
        data[i] = saved;
        const double numeric = (up - down) / (2 * eps);
        INFO(p.name << "[" << i << "]: analytic " << analytic[i] << ", numeric " << numeric);
        CHECK(std::abs(analytic[i] - numeric) <= 1e-7 + 1e-5 * std::abs(numeric));
      }
    }
    CHECK(kinds.size() >= 11);
  }
}

TEST_CASE("tiny Mamba and DenseMamba overfit a fixed batch of 64 tokens", "[mamba]") {
  Generator gen(305);
  const Tensor ids = random_ids(gen, {1, 65}, 32);
  for (const std::string arch : {"mamba", "densemamba"}) {
    INFO(arch);
    json config = {
        {"arch", arch}, {"vocab_size", 32}, {"d_model", 32}, {"n_layers", 2}, {"d_state", 8}};
    auto model = tiny_model(config, 13, DType::f32);
    // Adam (Kingma & Ba 2015), lr 1e-2, betas (0.9, 0.999), no weight decay.
    const auto params = model->parameters();
    std::vector<std::vector<float>> m1(params.size()), m2(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
      m1[k].assign(static_cast<size_t>(params[k].numel()), 0.0f);
      m2[k].assign(static_cast<size_t>(params[k].numel()), 0.0f);
    }
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double loss = 0;
    for (int step = 1; step <= 300; ++step) {
      model->zero_grad();
      const Tensor l = next_token_loss(*model, ids);
      loss = l.item();
      if (loss < 0.05) break;
      l.backward();
      const double c1 = 1 - std::pow(b1, step), c2 = 1 - std::pow(b2, step);
      for (size_t k = 0; k < params.size(); ++k) {
        const auto g = params[k].grad().to_vector<float>();
        float* p = params[k].data<float>();
        for (size_t i = 0; i < g.size(); ++i) {
          m1[k][i] = static_cast<float>(b1 * m1[k][i] + (1 - b1) * g[i]);
          m2[k][i] = static_cast<float>(b2 * m2[k][i] + (1 - b2) * g[i] * g[i]);
          p[i] -= static_cast<float>(lr * (m1[k][i] / c1) / (std::sqrt(m2[k][i] / c2) + eps));
        }
      }
    }
    CHECK(loss < 0.05);
  }
}

TEST_CASE("Mamba config: defaults, round trip and every problem listed", "[mamba]") {
  const MambaConfig c = MambaConfig::from_json(
      {{"arch", "densemamba"}, {"vocab_size", 100}, {"d_model", 40}, {"n_layers", 3}});
  CHECK(c.dt_rank == 3);  // ceil(40 / 16)
  CHECK(c.d_inner() == 80);
  CHECK(c.dense_options.m == 4);
  CHECK(c.dense_variant == "paper");
  CHECK(MambaConfig::from_json(c.to_json()).to_json() == c.to_json());
  CHECK_THROWS_WITH(MambaConfig::from_json({{"arch", "densemamba"},
                                            {"vocab_size", 100},
                                            {"d_model", 0},
                                            {"n_layers", 3},
                                            {"dense_variant", "states"},
                                            {"colour", 1}}),
                    Catch::Matchers::Contains("3 problems") &&
                        Catch::Matchers::Contains("'d_model'") &&
                        Catch::Matchers::Contains("\"paper\", \"input\"") &&
                        Catch::Matchers::Contains("unknown key 'colour'"));
}

TEST_CASE("Mamba step checks its state and ids", "[mamba]") {
  auto model = tiny_model(tiny_config("mamba"), 14, DType::f32);
  auto state = model->new_state(2);
  NoGradGuard no_grad;
  CHECK_THROWS_WITH(model->step(Tensor::zeros({3}, DType::i64), *state),
                    Catch::Contains("expected ids [2]"));
  State other;
  CHECK_THROWS_WITH(model->step(Tensor::zeros({2}, DType::i64), other),
                    Catch::Contains("this model's new_state"));
}
