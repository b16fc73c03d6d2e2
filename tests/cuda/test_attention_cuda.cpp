// causal_attention on CUDA in bf16 (cuDNN's fused flash attention, cuda/attention_cudnn.cpp)
// against the composite on the CPU in f32, from the same bf16-rounded inputs: the output and the
// q, k, v gradients, at a small shape, at LLaMA-350M's (16 heads of 64, 2048 tokens), on heads
// split from [B, T, H, d] projections, and with a KV-cache offset.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "ops/attention.hpp"

using namespace dssm;

namespace {

constexpr double kTolerance = 2e-2;  // bf16 inputs and P, f32 accumulation

// max |a - b| / max |b|: an error relative to the reference's scale.
double relative_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff / std::max(scale, 1e-30);
}

struct Case {
  int64_t batch, heads, queries, keys, dim;
  bool token_major;  // q, k, v as [B, H, T, d] views of [B, T, H, d] buffers, as LLaMA makes them
};

// The GPU leaf for t [B, H, L, d] (laid out token-major when asked) and the view the op sees.
std::pair<Tensor, Tensor> gpu_input(const Tensor& t, bool token_major) {
  if (!token_major) {
    Tensor leaf = t.to(Device::cuda()).set_requires_grad();
    return {leaf, leaf};
  }
  Tensor leaf = t.permute({0, 2, 1, 3}).contiguous().to(Device::cuda()).set_requires_grad();
  return {leaf, leaf.permute({0, 2, 1, 3})};
}

Tensor as_heads(const Tensor& grad, bool token_major) {
  return token_major ? grad.permute({0, 2, 1, 3}) : grad;
}

// Runs the GPU op (which must take the fused path when `require_fused`) and the CPU composite,
// seeds both backwards with one random output gradient and compares output and gradients.
void compare_with_cpu(const Case& c, Generator& gen, bool require_fused) {
  const int64_t offset = c.keys - c.queries;
  const Tensor q = Tensor::randn({c.batch, c.heads, c.queries, c.dim}, gen).to(DType::bf16);
  const Tensor k = Tensor::randn({c.batch, c.heads, c.keys, c.dim}, gen).to(DType::bf16);
  const Tensor v = Tensor::randn({c.batch, c.heads, c.keys, c.dim}, gen).to(DType::bf16);
  const Tensor grad_out = Tensor::randn(q.shape(), gen).to(DType::bf16);
  std::vector<std::pair<Tensor, Tensor>> gpu;
  std::vector<Tensor> cpu;
  for (const Tensor& t : {q, k, v}) {
    gpu.push_back(gpu_input(t, c.token_major));
    cpu.push_back(t.to(DType::f32).detach().set_requires_grad());
  }
  const bool fused = causal_attention_is_fused(gpu[0].second, gpu[1].second, gpu[2].second, offset);
  if (require_fused) {
    REQUIRE(fused);
  } else if (!fused) {
    WARN("cuDNN refused this configuration: the composite ran on the GPU (see stderr)");
  }
  const Tensor gpu_out = causal_attention(gpu[0].second, gpu[1].second, gpu[2].second, offset);
  const Tensor cpu_out = causal_attention(cpu[0], cpu[1], cpu[2], offset);
  gpu_out.backward(grad_out.to(Device::cuda()));
  cpu_out.backward(grad_out.to(DType::f32));
  CHECK(gpu_out.dtype() == DType::bf16);
  CHECK(relative_error(gpu_out.to(Device::cpu()), cpu_out) < kTolerance);
  const char* names[] = {"dq", "dk", "dv"};
  for (size_t i = 0; i < 3; ++i) {
    INFO(names[i]);
    const Tensor grad = as_heads(gpu[i].first.grad(), c.token_major).to(Device::cpu());
    CHECK(relative_error(grad, cpu[i].grad()) < kTolerance);
  }
}

}  // namespace

TEST_CASE("fused causal attention on CUDA matches the CPU composite", "[cuda][attention]") {
  Generator gen(21);
  SECTION("B 2, H 4, T 256, d 64") {
    compare_with_cpu({2, 4, 256, 256, 64, false}, gen, true);
  }
  SECTION("the same on heads split from [B, T, H, d]") {
    compare_with_cpu({2, 4, 256, 256, 64, true}, gen, true);
  }
  SECTION("LLaMA-350M: B 1, H 16, T 2048, d 64") {
    compare_with_cpu({1, 16, 2048, 2048, 64, true}, gen, true);
  }
}

TEST_CASE("causal attention on CUDA after cached keys matches the CPU composite",
          "[cuda][attention]") {
  Generator gen(22);
  // 128 queries after 256 cached keys: the mask's diagonal shifted to the last key. Correct on
  // either path; a warning says when cuDNN refused it.
  compare_with_cpu({1, 2, 128, 384, 64, false}, gen, false);
}
