// Retention and rotary on CUDA against the CPU: forward and gradients, f32 and bf16, at
// DenseRetNet-350M's head sizes (dk 384, dv 1536, length 2048). Both sides start from the same
// inputs rounded to the dtype under test; the CPU reference computes in float64 and, to stay
// fast, on batch element 0 only (batch elements are independent).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

#include "ops/elementwise.hpp"
#include "ops/retention.hpp"
#include "ops/rotary.hpp"

using namespace dssm;

namespace {

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

Tensor first_batch(const Tensor& t) {
  return t.narrow(0, 0, 1);
}

struct Precision {
  DType dtype;
  double tolerance;
};
const Precision kPrecisions[] = {{DType::f32, 1e-4}, {DType::bf16, 3e-2}};

// Inputs drawn in f32 on the host and rounded to `dtype`; k scaled by dk^-1/2 as in the model.
std::vector<Tensor> retention_inputs(Generator& gen, DType dtype, int64_t batch, int64_t heads,
                                     int64_t length, int64_t dk, int64_t dv) {
  const double key_scale = 1.0 / std::sqrt(static_cast<double>(dk));
  return {Tensor::randn({batch, heads, length, dk}, gen).to(dtype),
          (Tensor::randn({batch, heads, length, dk}, gen) * key_scale).to(dtype),
          Tensor::randn({batch, heads, length, dv}, gen).to(dtype)};
}

using RetentionFn = std::function<Tensor(const Tensor& q, const Tensor& k, const Tensor& v)>;

// Runs `cuda_fn` on all inputs on the GPU and `cpu_fn` on batch element 0 in float64 on the CPU,
// seeds backward with the same random output gradient, and compares output and gradients.
void compare_with_cpu(const std::vector<Tensor>& inputs, const Precision& p,
                      const RetentionFn& cuda_fn, const RetentionFn& cpu_fn, Generator& gen) {
  std::vector<Tensor> on_gpu, on_cpu;
  for (const Tensor& t : inputs) {
    on_gpu.push_back(t.to(Device::cuda()).set_requires_grad());
    on_cpu.push_back(first_batch(t).to(DType::f64).detach().set_requires_grad());
  }
  const Tensor gpu_out = cuda_fn(on_gpu[0], on_gpu[1], on_gpu[2]);
  const Tensor cpu_out = cpu_fn(on_cpu[0], on_cpu[1], on_cpu[2]);
  const Tensor grad_out = Tensor::randn(gpu_out.shape(), gen).to(p.dtype);
  gpu_out.backward(grad_out.to(Device::cuda()));
  cpu_out.backward(first_batch(grad_out).to(DType::f64));
  CHECK(gpu_out.dtype() == p.dtype);
  CHECK(relative_error(first_batch(gpu_out).to(Device::cpu()), cpu_out) < p.tolerance);
  const char* names[] = {"dq", "dk", "dv"};
  for (size_t i = 0; i < 3; ++i) {
    INFO(names[i]);
    CHECK(relative_error(first_batch(on_gpu[i].grad()).to(Device::cpu()), on_cpu[i].grad()) <
          p.tolerance);
  }
}

}  // namespace

TEST_CASE("chunkwise retention on CUDA matches the CPU at DenseRetNet sizes", "[cuda][retention]") {
  for (const Precision& p : kPrecisions) {
    INFO(dtype_name(p.dtype));
    Generator gen(21);
    const std::vector<Tensor> in = retention_inputs(gen, p.dtype, 2, 2, 2048, 384, 1536);
    compare_with_cpu(
        in, p,
        [](const Tensor& q, const Tensor& k, const Tensor& v) {
          return retention_chunkwise(q, k, v, 256);
        },
        [](const Tensor& q, const Tensor& k, const Tensor& v) {
          return retention_chunkwise(q, k, v, 128);  // another chunking: the same function
        },
        gen);
  }
}

TEST_CASE("chunkwise retention on CUDA with a ragged last chunk and 4 heads", "[cuda][retention]") {
  for (const Precision& p : kPrecisions) {
    INFO(dtype_name(p.dtype));
    Generator gen(22);
    const std::vector<Tensor> in = retention_inputs(gen, p.dtype, 2, 4, 1000, 64, 96);
    for (bool normalize : {true, false}) {
      INFO("normalize " << normalize);
      const RetentionOptions options{.normalize = normalize};
      compare_with_cpu(
          in, p,
          [&](const Tensor& q, const Tensor& k, const Tensor& v) {
            return retention_chunkwise(q, k, v, 192, options);
          },
          [&](const Tensor& q, const Tensor& k, const Tensor& v) {
            return retention_parallel(q, k, v, options);
          },
          gen);
    }
  }
}

// Chunk, dk and dv that are not multiples of a 16-byte pack take the kernels' one-element paths,
// and float64 takes the GEMM fallback (no cuBLASLt accumulation): both against the parallel form.
TEST_CASE("chunkwise retention on CUDA at odd sizes and in float64", "[cuda][retention]") {
  const Precision precisions[] = {{DType::f64, 1e-9}, {DType::f32, 1e-4}, {DType::bf16, 3e-2}};
  for (const Precision& p : precisions) {
    INFO(dtype_name(p.dtype));
    Generator gen(26);
    const std::vector<Tensor> in = retention_inputs(gen, p.dtype, 2, 3, 37, 6, 10);
    for (int64_t chunk : {int64_t{1}, int64_t{5}, int64_t{16}, int64_t{64}}) {
      INFO("chunk " << chunk);
      compare_with_cpu(
          in, p,
          [&](const Tensor& q, const Tensor& k, const Tensor& v) {
            return retention_chunkwise(q, k, v, chunk);
          },
          [](const Tensor& q, const Tensor& k, const Tensor& v) {
            return retention_parallel(q, k, v);
          },
          gen);
    }
  }
}

// The chunk sizes of bench/retention_bench.cpp, including 512 and 64 (many chunk states).
TEST_CASE("chunkwise retention on CUDA at the benchmark's chunk sizes", "[cuda][retention]") {
  Generator gen(27);
  const Precision p{DType::bf16, 3e-2};
  const std::vector<Tensor> in = retention_inputs(gen, p.dtype, 1, 2, 1024, 128, 256);
  for (int64_t chunk : {int64_t{64}, int64_t{512}}) {
    INFO("chunk " << chunk);
    compare_with_cpu(
        in, p,
        [&](const Tensor& q, const Tensor& k, const Tensor& v) {
          return retention_chunkwise(q, k, v, chunk);
        },
        [](const Tensor& q, const Tensor& k, const Tensor& v) {
          return retention_chunkwise(q, k, v, 100);
        },
        gen);
  }
}

TEST_CASE("parallel retention on CUDA matches the CPU", "[cuda][retention]") {
  for (const Precision& p : kPrecisions) {
    INFO(dtype_name(p.dtype));
    Generator gen(23);
    const std::vector<Tensor> in = retention_inputs(gen, p.dtype, 2, 3, 512, 128, 256);
    const RetentionOptions options{
        .gammas = Tensor::from_vector(std::vector<double>{0.9, 0.99, 0.999}, {3})};
    const RetentionFn parallel = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return retention_parallel(q, k, v, options);
    };
    compare_with_cpu(in, p, parallel, parallel, gen);
  }
}

TEST_CASE("the recurrent step on CUDA matches the CPU", "[cuda][retention]") {
  for (const Precision& p : kPrecisions) {
    INFO(dtype_name(p.dtype));
    Generator gen(24);
    const int64_t batch = 2, heads = 2, dk = 384, dv = 1536;
    const std::vector<Tensor> in = retention_inputs(gen, p.dtype, batch, heads, 4, dk, dv);
    const Tensor start = Tensor::randn({batch, heads, dk, dv}, gen).to(p.dtype);
    auto run = [&](Device device, DType dtype) {  // 4 steps from positions 100 .. 103
      Tensor state = start.to(dtype).to(device);
      std::vector<Tensor> outs;
      for (int64_t t = 0; t < 4; ++t) {
        const RetentionStepResult r = retention_step(
            in[0].select(2, t).to(dtype).to(device), in[1].select(2, t).to(dtype).to(device),
            in[2].select(2, t).to(dtype).to(device), state, 100 + t);
        outs.push_back(r.out);
        state = r.state;
      }
      outs.push_back(state);
      return outs;
    };
    const std::vector<Tensor> gpu = run(Device::cuda(), p.dtype),
                              cpu = run(Device::cpu(), DType::f64);
    for (size_t i = 0; i < gpu.size(); ++i) {
      INFO("output " << i);
      CHECK(relative_error(gpu[i].to(Device::cpu()), cpu[i]) < p.tolerance);
    }
  }
}

TEST_CASE("rotary on CUDA matches the CPU, forward and backward", "[cuda][retention]") {
  for (const Precision& p : kPrecisions) {
    for (int64_t offset : {int64_t{0}, int64_t{3000}}) {
      INFO(dtype_name(p.dtype) << ", offset " << offset);
      Generator gen(25);
      const Tensor x = Tensor::randn({2, 4, 2048, 384}, gen).to(p.dtype);
      const Tensor grad_out = Tensor::randn(x.shape(), gen).to(p.dtype);
      const Tensor x_gpu = x.to(Device::cuda()).set_requires_grad();
      const Tensor x_cpu = x.to(DType::f64).set_requires_grad();
      const Tensor y_gpu = rotary(x_gpu, offset), y_cpu = rotary(x_cpu, offset);
      y_gpu.backward(grad_out.to(Device::cuda()));
      y_cpu.backward(grad_out.to(DType::f64));
      CHECK(relative_error(y_gpu.to(Device::cpu()), y_cpu) < p.tolerance);
      CHECK(relative_error(x_gpu.grad().to(Device::cpu()), x_cpu.grad()) < p.tolerance);
    }
  }
}
