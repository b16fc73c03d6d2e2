// The optimizer's pieces against hand computations: AdamW, the LR schedules, global-norm
// clipping, and the f32 master weights of mixed precision.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "autograd/grad_mode.hpp"
#include "nn/module.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "train/adamw.hpp"
#include "train/clip.hpp"
#include "train/master_weights.hpp"
#include "train/schedule.hpp"

using namespace dssm;
using namespace dssm::train;

namespace {

std::mt19937_64 fresh_rng() {
  const uint64_t seed = std::random_device{}();
  UNSCOPED_INFO("random seed " << seed);
  return std::mt19937_64(seed);
}

std::vector<double> random_values(std::mt19937_64& rng, size_t n, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> out(n);
  for (auto& v : out) v = normal(rng);
  return out;
}

// A parameter (leaf requiring grad) holding `values`.
Tensor parameter(const std::vector<double>& values, DType dtype = DType::f64) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, dtype);
  t.set_requires_grad(true);
  return t;
}

// torch.optim.AdamW's update of one element, in double.
struct ReferenceAdamW {
  double lr, beta1, beta2, eps, weight_decay;
  double m = 0, v = 0;
  int t = 0;
  double step(double p, double g, bool decay) {
    ++t;
    if (decay) p *= 1 - lr * weight_decay;
    m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g * g;
    const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
    return p - lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + eps);
  }
};

}  // namespace

TEST_CASE("AdamW: three steps equal the hand computation, with and without decay", "[train]") {
  auto rng = fresh_rng();
  const size_t n = 5;
  const AdamWConfig config{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  const double lr = 1e-2;
  const std::vector<double> start_a = random_values(rng, n), start_b = random_values(rng, n);
  Tensor a = parameter(start_a), b = parameter(start_b);
  AdamW optimizer({{"a", a, true}, {"b", b, false}}, config);

  std::vector<ReferenceAdamW> ref_a(n, {lr, 0.9, 0.95, 1e-8, 0.1}), ref_b = ref_a;
  std::vector<double> expect_a = start_a, expect_b = start_b;
  for (int step = 0; step < 3; ++step) {
    const std::vector<double> ga = random_values(rng, n), gb = random_values(rng, n);
    a.set_grad(Tensor::from_vector(ga, {static_cast<int64_t>(n)}));
    b.set_grad(Tensor::from_vector(gb, {static_cast<int64_t>(n)}));
    optimizer.step(lr);
    for (size_t i = 0; i < n; ++i) {
      expect_a[i] = ref_a[i].step(expect_a[i], ga[i], true);
      expect_b[i] = ref_b[i].step(expect_b[i], gb[i], false);
    }
  }
  const auto got_a = a.to_vector<double>(), got_b = b.to_vector<double>();
  for (size_t i = 0; i < n; ++i) {
    CHECK(got_a[i] == Approx(expect_a[i]).epsilon(1e-12));
    CHECK(got_b[i] == Approx(expect_b[i]).epsilon(1e-12));
  }
  CHECK(optimizer.steps_taken() == 3);
}

TEST_CASE("AdamW: one f32 step by hand; no gradient, no change; grad_scale scales g", "[train]") {
  // p = 1, g = 0.5, lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, first step:
  // m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25 -> p = 1 * (1 - 0.001) - 0.1 * 0.5 / 0.5.
  Tensor p = parameter({1.0}, DType::f32), idle = parameter({3.0}, DType::f32);
  AdamW optimizer({{"p", p, true}, {"idle", idle, true}},
                  {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  p.set_grad(Tensor::from_vector(std::vector<float>{0.5f}, {1}));
  optimizer.step(0.1);
  CHECK(p.item() == Approx(0.999 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-6));
  CHECK(idle.item() == 3.0);

  // Scaling the gradient by c inside the step equals handing it c * g.
  auto rng = fresh_rng();
  const std::vector<double> start = random_values(rng, 7), g = random_values(rng, 7);
  Tensor x = parameter(start), y = parameter(start);
  AdamW ox({{"x", x, true}}, {}), oy({{"y", y, true}}, {});
  x.set_grad(Tensor::from_vector(g, {7}));
  std::vector<double> scaled = g;
  for (auto& v : scaled) v *= 0.25;
  y.set_grad(Tensor::from_vector(scaled, {7}));
  ox.step(1e-3, 0.25);
  oy.step(1e-3);
  const auto vx = x.to_vector<double>(), vy = y.to_vector<double>();
  for (size_t i = 0; i < 7; ++i) CHECK(vx[i] == Approx(vy[i]).epsilon(1e-14));
}

TEST_CASE("AdamW: state round trip continues identically; bad state is listed", "[train]") {
  auto rng = fresh_rng();
  const std::vector<double> start = random_values(rng, 6);
  Tensor a = parameter(start), b = parameter(start);
  AdamW first({{"w", a, true}}, {});
  const std::vector<double> g1 = random_values(rng, 6), g2 = random_values(rng, 6);
  a.set_grad(Tensor::from_vector(g1, {6}));
  first.step(1e-2);
  // A second optimizer over a copy of the parameter, given the first's state.
  {
    NoGradGuard no_grad;
    b.copy_from(a);
  }
  AdamW second({{"w", b, true}}, {});
  std::map<std::string, Tensor> saved;
  for (const auto& [name, t] : first.state()) saved.emplace(name, t.clone());
  second.load_state(saved, first.steps_taken());
  a.set_grad(Tensor::from_vector(g2, {6}));
  b.set_grad(Tensor::from_vector(g2, {6}));
  first.step(1e-2);
  second.step(1e-2);
  CHECK(a.to_vector<double>() == b.to_vector<double>());

  saved.erase("exp_avg.w");
  saved["exp_avg_sq.w"] = Tensor::zeros({3}, DType::f64);
  saved["exp_avg.other"] = Tensor::zeros({1}, DType::f64);
  try {
    second.load_state(saved, 1);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains("missing 'exp_avg.w'"));
    CHECK_THAT(message, Catch::Contains("'exp_avg_sq.w' has shape [3], expected [6]"));
    CHECK_THAT(message, Catch::Contains("unexpected 'exp_avg.other'"));
  }
}

TEST_CASE("schedules: warm-up, polynomial, cosine and constant at key steps", "[train]") {
  // 1000 steps, 1.5 % warm-up = 15 steps, peak 6e-4, end 6e-5.
  CHECK(warmup_steps_for(0.015, 1000) == 15);
  CHECK(warmup_steps_for(0.0, 1000) == 0);
  CHECK(warmup_steps_for(1e-6, 1000) == 1);
  Schedule s{.kind = ScheduleKind::polynomial,
             .lr = 6e-4,
             .end_lr = 6e-5,
             .power = 1.0,
             .warmup_steps = 15,
             .total_steps = 1000};
  CHECK(learning_rate(s, 0) == Approx(6e-4 / 15));
  CHECK(learning_rate(s, 7) == Approx(6e-4 * 8 / 15));
  CHECK(learning_rate(s, 14) == Approx(6e-4));
  CHECK(learning_rate(s, 15) == Approx(6e-4));   // decay starts at the peak
  CHECK(learning_rate(s, 999) == Approx(6e-5));  // and ends on end_lr at the last step
  const double half = 15 + (999 - 15) / 2.0;     // halfway through the decay
  CHECK(learning_rate(s, static_cast<int64_t>(half)) == Approx(6e-5 + (6e-4 - 6e-5) * 0.5));
  s.power = 2.0;
  CHECK(learning_rate(s, static_cast<int64_t>(half)) == Approx(6e-5 + (6e-4 - 6e-5) * 0.25));
  s.kind = ScheduleKind::cosine;
  CHECK(learning_rate(s, static_cast<int64_t>(half)) == Approx(6e-5 + (6e-4 - 6e-5) * 0.5));
  CHECK(learning_rate(s, 999) == Approx(6e-5));
  const int64_t quarter = 15 + 246;  // done = 246 / 984 = 1/4
  CHECK(learning_rate(s, quarter) == Approx(6e-5 + (6e-4 - 6e-5) * 0.5 * (1 + std::cos(M_PI / 4))));
  s.kind = ScheduleKind::constant;
  CHECK(learning_rate(s, 3) == Approx(6e-4 * 4 / 15));
  CHECK(learning_rate(s, 500) == 6e-4);
  CHECK(learning_rate(s, 999) == 6e-4);
  CHECK_THROWS_WITH(schedule_kind_from_name("linear"),
                    Catch::Contains("expected polynomial, cosine or constant"));
}

TEST_CASE("clipping: the global norm over all gradients and the coefficient", "[train]") {
  auto rng = fresh_rng();
  const std::vector<double> g1 = random_values(rng, 10000, 0.3), g2 = random_values(rng, 17);
  Tensor a = parameter(std::vector<double>(10000, 0.0), DType::f32);
  Tensor b = parameter(std::vector<double>(17, 0.0), DType::f32);
  Tensor none = parameter({1.0}, DType::f32);  // no gradient: counts as zero
  a.set_grad(Tensor::from_vector(g1, {10000}, DType::f32));
  b.set_grad(Tensor::from_vector(g2, {17}, DType::f32));
  double expected = 0;
  for (double v : a.grad().to_vector<double>()) expected += v * v;
  for (double v : b.grad().to_vector<double>()) expected += v * v;
  const double norm = global_grad_norm({a, b, none});
  CHECK(norm == Approx(std::sqrt(expected)).epsilon(1e-12));
  CHECK(clip_coefficient(norm, 1.0) == Approx(1.0 / (norm + 1e-6)));
  CHECK(clip_coefficient(0.5, 1.0) == 1.0);
  CHECK(clip_coefficient(50.0, 0.0) == 1.0);  // clipping off

  // After clipping the update is the one of gradients rescaled to norm max_norm.
  Tensor p = parameter(std::vector<double>(17, 1.0)), q = parameter(std::vector<double>(17, 1.0));
  const double norm_b = global_grad_norm({b});
  p.set_grad(b.grad().to(DType::f64));
  std::vector<double> rescaled = b.grad().to_vector<double>();
  for (auto& v : rescaled) v *= 0.1 / norm_b;
  q.set_grad(Tensor::from_vector(rescaled, {17}));
  CHECK(global_grad_norm({q}) == Approx(0.1));
  AdamW op({{"p", p, false}}, {}), oq({{"q", q, false}}, {});
  op.step(1.0, clip_coefficient(norm_b, 0.1));
  oq.step(1.0);
  const auto vp = p.to_vector<double>(), vq = q.to_vector<double>();
  for (size_t i = 0; i < 17; ++i) CHECK(vp[i] == Approx(vq[i]).epsilon(1e-6));
}

namespace {

// y = sum(w * x) over a parameter w, as a module, to test the master weights.
class Dot : public nn::Module {
 public:
  explicit Dot(const std::vector<double>& w) {
    w_ = register_parameter("w",
                            Tensor::from_vector(w, {static_cast<int64_t>(w.size())}, DType::f32));
  }
  Tensor forward(const Tensor& x) const { return sum(mul(w_, x.to(w_.dtype()))); }

 private:
  Tensor w_;
};

}  // namespace

TEST_CASE("master weights: bf16 model, f32 masters, gradients summed in f32", "[train]") {
  auto rng = fresh_rng();
  const std::vector<double> w = random_values(rng, 8), x1 = random_values(rng, 8),
                            x2 = random_values(rng, 8);
  Dot model(w);
  MasterWeights weights(model, DType::bf16);
  REQUIRE(weights.separate());
  CHECK(model.parameters()[0].dtype() == DType::bf16);
  const Tensor master = weights.parameters()[0].tensor;
  CHECK(master.dtype() == DType::f32);
  CHECK(master.to_vector<float>() == Tensor::from_vector(w, {8}, DType::f32).to_vector<float>());

  // d(sum w x)/dw = x, in bf16 per micro-batch, summed in f32: bf16(x1) + bf16(x2).
  for (const auto* x : {&x1, &x2}) {
    model.forward(Tensor::from_vector(*x, {8}, DType::f32)).backward();
    weights.accumulate_gradients();
    CHECK_FALSE(model.parameters()[0].grad().defined());
  }
  const auto g = master.grad().to_vector<float>();
  const auto b1 = Tensor::from_vector(x1, {8}, DType::bf16).to_vector<float>();
  const auto b2 = Tensor::from_vector(x2, {8}, DType::bf16).to_vector<float>();
  for (size_t i = 0; i < 8; ++i) CHECK(g[i] == b1[i] + b2[i]);

  // An update lands in the master, then in the model rounded to bf16.
  AdamW optimizer(weights.parameters(), {});
  optimizer.step(1e-3);
  weights.copy_to_model();
  CHECK(model.parameters()[0].to_vector<float>() == master.to(DType::bf16).to_vector<float>());
  bool ran = false;
  weights.with_f32_model([&] {
    ran = true;
    CHECK(model.parameters()[0].dtype() == DType::f32);
    CHECK(model.parameters()[0].to_vector<float>() == master.to_vector<float>());
  });
  CHECK(ran);
  CHECK(model.parameters()[0].dtype() == DType::bf16);

  // In f32 the masters are the parameters themselves.
  Dot plain(w);
  MasterWeights same(plain, DType::f32);
  CHECK_FALSE(same.separate());
  CHECK(same.parameters()[0].tensor.same_storage(plain.parameters()[0]));
}
