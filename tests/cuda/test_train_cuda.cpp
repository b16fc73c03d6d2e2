// The trainer's CUDA kernels against the CPU: the fused multi-tensor AdamW step and the sum of
// squares behind the global gradient norm; and a tiny model's training steps in f32 and bf16.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <random>

#include "models/language_model.hpp"
#include "train/accumulate.hpp"
#include "train/adamw.hpp"
#include "train/clip.hpp"
#include "train/master_weights.hpp"

using namespace dssm;
using namespace dssm::train;

namespace {

Tensor random_parameter(const Shape& shape, Generator& gen, Device device) {
  Tensor t = Tensor::randn(shape, gen).to(device);
  t.set_requires_grad(true);
  return t;
}

}  // namespace

TEST_CASE("fused AdamW on CUDA equals the CPU step over many tensors", "[cuda][train]") {
  Generator gen(std::random_device{}());
  // Sizes around the kernel's chunk (16384) and tiny ones, decayed and not.
  const std::vector<Shape> shapes = {{3}, {16384}, {16385}, {70, 513}, {1}, {40000}};
  std::vector<nn::NamedParameter> cpu, gpu;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor p = random_parameter(shapes[i], gen, Device::cpu());
    cpu.push_back({fmt::format("p{}", i), p, i % 2 == 0});
    Tensor q = p.detach().to(Device::cuda());
    q.set_requires_grad(true);
    gpu.push_back({fmt::format("p{}", i), q, i % 2 == 0});
  }
  AdamW on_cpu(cpu, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  AdamW on_gpu(gpu, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  for (int step = 0; step < 3; ++step) {
    std::vector<Tensor> g_cpu;
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (step == 1 && i == 3) {  // a parameter without a gradient this step
        cpu[i].tensor.zero_grad();
        gpu[i].tensor.zero_grad();
        continue;
      }
      const Tensor g = Tensor::randn(shapes[i], gen);
      cpu[i].tensor.set_grad(g);
      gpu[i].tensor.set_grad(g.to(Device::cuda()));
      g_cpu.push_back(cpu[i].tensor);
    }
    const double norm_cpu = global_grad_norm(g_cpu);
    std::vector<Tensor> g_gpu;
    for (const auto& p : gpu) g_gpu.push_back(p.tensor);
    CHECK(global_grad_norm(g_gpu) == Approx(norm_cpu).epsilon(1e-5));
    on_cpu.step(1e-2, 0.5);
    on_gpu.step(1e-2, 0.5);
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto a = cpu[i].tensor.to_vector<float>(), b = gpu[i].tensor.to_vector<float>();
    double worst = 0;
    for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, double(std::abs(a[j] - b[j])));
    INFO("tensor " << i);
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("a tiny DenseRetNet and DenseMamba train on CUDA like on the CPU", "[cuda][train]") {
  for (const char* arch : {"densretnet", "densemamba"}) {
    INFO(arch);
    nlohmann::json config = {
        {"arch", arch}, {"vocab_size", 64}, {"d_model", 32}, {"n_layers", 2}, {"dense_m", 2}};
    if (std::string(arch) == "densretnet") {
      config.update({{"n_heads", 2}, {"qk_dim", 16}, {"v_dim", 64}});
    } else {
      config["d_state"] = 8;
    }
    std::vector<int32_t> ids(2 * 33);
    std::mt19937 rng(3);
    for (auto& t : ids) t = static_cast<int32_t>(rng() % 64);
    std::vector<double> losses[3];
    const std::pair<Device, DType> runs[3] = {
        {Device::cpu(), DType::f32}, {Device::cuda(), DType::f32}, {Device::cuda(), DType::bf16}};
    for (int r = 0; r < 3; ++r) {
      auto model = models::make_model(config, 1);
      model->to(runs[r].first);
      MasterWeights weights(*model, runs[r].second);
      AdamW optimizer(weights.parameters(), {});
      for (int step = 0; step < 4; ++step) {
        const Batch batch = make_batch(ids, 2, 32, runs[r].first);
        losses[r].push_back(accumulate_gradients(*model, weights, {batch}));
        optimizer.step(1e-2, clip_coefficient(global_grad_norm(weights.tensors()), 1.0));
        weights.copy_to_model();
        weights.zero_grad();
      }
    }
    for (int step = 0; step < 4; ++step) {
      CHECK(losses[1][step] == Approx(losses[0][step]).epsilon(1e-4));
      CHECK(losses[2][step] == Approx(losses[0][step]).epsilon(3e-2));
    }
    CHECK(losses[1].back() < losses[1].front());
  }
}
