// gpu_core: throughput of the core CUDA ops against the device's own ceilings.
//   memory-bound ops: GB/s (bytes read + written) as a fraction of a device-to-device copy's,
//     on tensors of 64 MiB and more; the row ops (softmax, rms_norm, cross-entropy) forward and
//     backward ("bwd": the backward kernel alone), in f32 and bf16;
//   matmul: TFLOP/s as a fraction of cuBLAS called directly in this program on the same shapes;
//   the caching allocator: cudaMalloc calls during a steady training-like loop (should be 0).
// Each figure is the median of 15 timed reps (of 10 back-to-back calls each) after 3 warm-up
// calls, timed with CUDA events; matmul also shows the ratio for single calls, which includes
// the host's per-call overhead.
// Usage: gpu_core   (results recorded in docs/benchmarks.md, "GPU core")
#include <fmt/format.h>

#if !defined(DSSM_WITH_CUDA)
int main() {
  fmt::print("gpu_core: built without CUDA, nothing to measure\n");
  return 0;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "cuda/allocator.hpp"
#include "cuda/backend.hpp"
#include "cuda/blas.hpp"
#include "cuda/kernels_nn.hpp"
#include "cuda/stream.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/softmax.hpp"

using namespace dssm;

namespace {

constexpr int kWarmup = 3;
constexpr int kReps = 15;

void check_cuda_call(cudaError_t status, const char* call) {
  if (status != cudaSuccess) fail("gpu_core", "{} failed: {}", call, cudaGetErrorString(status));
}
void check_cublas_call(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    fail("gpu_core", "{} failed: {}", call, cublasGetStatusName(status));
  }
}

// Median milliseconds per call of fn, each timed rep running fn kCallsPerRep times back to back
// (so that the host's per-call overhead overlaps the GPU's work, as in a training loop) between
// two events on densessm's stream, where every call here queues its work.
constexpr int kCallsPerRep = 10;

double median_ms(const std::function<void()>& fn, int calls_per_rep = kCallsPerRep) {
  for (int i = 0; i < kWarmup; ++i) fn();
  const cudaStream_t stream = cuda::current_stream();
  cudaEvent_t start, stop;
  check_cuda_call(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda_call(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < kReps; ++i) {
    check_cuda_call(cudaEventRecord(start, stream), "cudaEventRecord");
    for (int call = 0; call < calls_per_rep; ++call) fn();
    check_cuda_call(cudaEventRecord(stop, stream), "cudaEventRecord");
    check_cuda_call(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda_call(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms / calls_per_rep);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

const Device kCuda = Device::cuda(0);

// ---- memory-bound ops ------------------------------------------------------------------------

struct BandwidthRow {
  std::string op;
  std::string shape;
  double bytes;  // read + written per call
  std::function<void()> run;
};

void bandwidth_table() {
  Generator gen(1);
  const int64_t n = int64_t{1} << 26;  // 64 Mi elements: 256 MiB of f32, 128 MiB of bf16
  const Tensor a = Tensor::randn({n}, gen, DType::f32, kCuda);
  const Tensor b = Tensor::randn({n}, gen, DType::f32, kCuda);
  const Tensor a16 = a.to(DType::bf16), b16 = b.to(DType::bf16);
  const Tensor copy_dst = Tensor::empty({n}, DType::f32, kCuda);
  const double f32_bytes = static_cast<double>(n) * 4, bf16_bytes = static_cast<double>(n) * 2;

  const double copy_ms = median_ms(
      [&] { cuda::copy_bytes(copy_dst.raw_data(), kCuda, a.raw_data(), kCuda, a.nbytes()); });
  const double copy_gbs = 2 * f32_bytes / copy_ms / 1e6;

  // Rows of 4096 (a hidden size) and of 32000 (a vocabulary) for the row-wise ops. The backward
  // rows call the kernels of cuda/kernels_nn.hpp directly (the op's backward closure would also
  // time the forward); their statistics (rstd, lse) come from one forward call.
  const int64_t hidden = 4096, vocab = 32000, tokens = 8192, rows_of_x = n / hidden;
  const Tensor x = a.reshape({rows_of_x, hidden}), x16 = a16.reshape({rows_of_x, hidden});
  const Tensor gx = b.reshape({rows_of_x, hidden}), gx16 = b16.reshape({rows_of_x, hidden});
  const Tensor weight = Tensor::rand({hidden}, gen, DType::f32, kCuda) + 0.5;
  const Tensor weight16 = weight.to(DType::bf16);
  const Tensor logits = Tensor::randn({tokens, vocab}, gen, DType::f32, kCuda);
  const Tensor logits16 = logits.to(DType::bf16);
  const Tensor targets =
      (Tensor::rand({tokens}, gen, DType::f32, kCuda) * (vocab - 1)).to(DType::i64);
  const double logits_bytes = static_cast<double>(tokens) * vocab * 4;
  const Tensor grad_loss = Tensor::ones({1}, DType::f32, kCuda);

  auto rms_stats = [&](const Tensor& in, const Tensor& w) {
    const Tensor rstd = Tensor::empty({rows_of_x}, DType::f32, kCuda);
    cuda::norm_forward(Tensor::empty(in.shape(), in.dtype(), kCuda), Tensor(), rstd, in, w,
                       Tensor(), 1, 1e-6);
    return rstd;
  };
  const Tensor rstd = rms_stats(x, weight), rstd16 = rms_stats(x16, weight16);
  auto rms_backward = [&](const Tensor& in, const Tensor& g, const Tensor& w, const Tensor& r) {
    cuda::norm_backward(Tensor::empty(in.shape(), in.dtype(), kCuda),
                        Tensor::empty({hidden}, in.dtype(), kCuda), Tensor(), g, in, w, Tensor(), r,
                        1);
  };
  auto lse_of = [&](const Tensor& l) {
    const Tensor lse = Tensor::empty({tokens}, DType::f32, kCuda);
    cuda::cross_entropy_forward(Tensor::empty({tokens}, DType::f32, kCuda), lse, l, targets, -100);
    return lse;
  };
  const Tensor lse = lse_of(logits), lse16 = lse_of(logits16);
  auto ce_backward = [&](const Tensor& l, const Tensor& row_lse) {
    cuda::cross_entropy_backward(Tensor::empty(l.shape(), l.dtype(), kCuda), l, targets, row_lse,
                                 grad_loss, 1.0 / tokens, -100);
  };
  const Tensor y = softmax(x, -1);
  auto softmax_backward = [&] {
    cuda::softmax_backward(Tensor::empty(x.shape(), x.dtype(), kCuda), gx, y, false);
  };

  // The layouts around the selective scan: [B, T, D] <-> [B, D, T] (16 x 2048 x 2048).
  const Tensor cube16 = a16.reshape({16, 2048, 2048}), other16 = b16.reshape({16, 2048, 2048});
  const Tensor cube = a.reshape({16, 2048, 2048});
  std::vector<BandwidthRow> rows = {
      {"add f32", "[64Mi] + [64Mi]", 3 * f32_bytes, [&] { add(a, b); }},
      {"add bf16", "[64Mi] + [64Mi]", 3 * bf16_bytes, [&] { add(a16, b16); }},
      {"transpose f32", "[16, 2Ki, 2Ki] (1, 2)", 2 * f32_bytes,
       [&] { cube.transpose(1, 2).contiguous(); }},
      {"transpose bf16", "[16, 2Ki, 2Ki] (1, 2)", 2 * bf16_bytes,
       [&] { cube16.transpose(1, 2).contiguous(); }},
      {"add bf16 transposed", "[16, 2Ki, 2Ki]^T + ..", 3 * bf16_bytes,
       [&] { add(cube16.transpose(1, 2), other16); }},
      {"silu f32", "[64Mi]", 2 * f32_bytes, [&] { silu(a); }},
      {"silu bf16", "[64Mi]", 2 * bf16_bytes, [&] { silu(a16); }},
      {"sum f32 (all)", "[64Mi]", f32_bytes, [&] { sum(a); }},
      {"sum f32 (rows)", "[16Ki, 4096] dim 1", f32_bytes, [&] { sum(x, {1}); }},
      {"softmax f32", "[16Ki, 4096] dim 1", 2 * f32_bytes, [&] { softmax(x, -1); }},
      {"softmax bf16", "[16Ki, 4096] dim 1", 2 * bf16_bytes, [&] { softmax(x16, -1); }},
      {"softmax bwd f32", "[16Ki, 4096] dim 1", 3 * f32_bytes, softmax_backward},
      {"rms_norm f32", "[16Ki, 4096]", 2 * f32_bytes, [&] { rms_norm(x, weight); }},
      {"rms_norm bf16", "[16Ki, 4096]", 2 * bf16_bytes, [&] { rms_norm(x16, weight16); }},
      {"rms_norm bwd f32", "[16Ki, 4096]", 3 * f32_bytes,
       [&] { rms_backward(x, gx, weight, rstd); }},
      {"rms_norm bwd bf16", "[16Ki, 4096]", 3 * bf16_bytes,
       [&] { rms_backward(x16, gx16, weight16, rstd16); }},
      {"cross_entropy f32", "[8192, 32000]", logits_bytes, [&] { cross_entropy(logits, targets); }},
      {"cross_entropy bf16", "[8192, 32000]", logits_bytes / 2,
       [&] { cross_entropy(logits16, targets); }},
      {"xent bwd f32", "[8192, 32000]", 2 * logits_bytes, [&] { ce_backward(logits, lse); }},
      {"xent bwd bf16", "[8192, 32000]", logits_bytes, [&] { ce_backward(logits16, lse16); }},
  };
  fmt::print("\nMemory-bound ops (median of {} reps of {} calls; bytes = read + written)\n", kReps,
             kCallsPerRep);
  fmt::print("{:<20} {:<20} {:>10} {:>10} {:>10}\n", "op", "shape", "time ms", "GB/s", "of copy");
  fmt::print("{:<20} {:<20} {:>10.3f} {:>10.0f} {:>10}\n", "d2d copy f32", "[64Mi]", copy_ms,
             copy_gbs, "1.00");
  for (const BandwidthRow& row : rows) {
    try {
      const double ms = median_ms(row.run);
      const double gbs = row.bytes / ms / 1e6;
      fmt::print("{:<20} {:<20} {:>10.3f} {:>10.0f} {:>10.2f}\n", row.op, row.shape, ms, gbs,
                 gbs / copy_gbs);
    } catch (const std::exception& e) {  // an op without a CUDA kernel yet
      fmt::print("{:<20} {:<20} not available: {}\n", row.op, row.shape, e.what());
    }
  }
}

// ---- matmul against cuBLAS -------------------------------------------------------------------

struct GemmShape {
  int64_t batch, m, k, n;
};

// The same row-major product C = A B through cuBLAS directly: C^T = B^T A^T column-major.
void cublas_gemm(cublasHandle_t handle, const Tensor& a, const Tensor& b, const Tensor& c,
                 const GemmShape& s, bool tf32) {
  const float alpha = 1, beta = 0;
  const bool bf16 = a.dtype() == DType::bf16;
  const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute =
      bf16 || !tf32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  check_cublas_call(cublasGemmStridedBatchedEx(
                        handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(s.n),
                        static_cast<int>(s.m), static_cast<int>(s.k), &alpha, b.raw_data(), type,
                        static_cast<int>(s.n), s.k * s.n, a.raw_data(), type, static_cast<int>(s.k),
                        s.m * s.k, &beta, c.raw_data(), type, static_cast<int>(s.n), s.m * s.n,
                        static_cast<int>(s.batch), compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmStridedBatchedEx");
}

void matmul_table() {
  cublasHandle_t handle;
  check_cublas_call(cublasCreate(&handle), "cublasCreate");
  check_cublas_call(cublasSetStream(handle, cuda::current_stream()), "cublasSetStream");
  Generator gen(2);
  const GemmShape shapes[] = {{1, 4096, 4096, 4096}, {1, 8192, 2048, 2048}, {32, 1024, 1024, 1024}};
  struct Mode {
    const char* name;
    DType dtype;
    bool tf32;
  };
  const Mode modes[] = {
      {"bf16", DType::bf16, false}, {"f32", DType::f32, false}, {"f32 tf32", DType::f32, true}};
  fmt::print("\nmatmul (median of {} reps of {} calls), ours vs cuBLAS called directly\n", kReps,
             kCallsPerRep);
  fmt::print("{:<10} {:<24} {:>10} {:>12} {:>12} {:>8} {:>14}\n", "dtype", "B x M x K x N",
             "ours ms", "ours TFLOP/s", "cuBLAS", "ratio", "1-call ratio");
  for (const Mode& mode : modes) {
    for (const GemmShape& s : shapes) {
      const Tensor a = Tensor::randn({s.batch, s.m, s.k}, gen, mode.dtype, kCuda);
      const Tensor b = Tensor::randn({s.batch, s.k, s.n}, gen, mode.dtype, kCuda);
      const Tensor c = Tensor::empty({s.batch, s.m, s.n}, mode.dtype, kCuda);
      const double flops = 2.0 * s.batch * s.m * s.k * s.n;
      auto ours = [&] { bmm(a, b); };
      auto reference = [&] { cublas_gemm(handle, a, b, c, s, mode.tf32); };
      cuda::set_allow_tf32(mode.tf32);
      const double ours_ms = median_ms(ours), ours_single_ms = median_ms(ours, 1);
      cuda::set_allow_tf32(false);
      const double ref_ms = median_ms(reference), ref_single_ms = median_ms(reference, 1);
      const double ours_tflops = flops / ours_ms / 1e9, ref_tflops = flops / ref_ms / 1e9;
      fmt::print("{:<10} {:<24} {:>10.3f} {:>12.1f} {:>12.1f} {:>8.2f} {:>14.2f}\n", mode.name,
                 fmt::format("{} x {} x {} x {}", s.batch, s.m, s.k, s.n), ours_ms, ours_tflops,
                 ref_tflops, ref_ms / ours_ms, ref_single_ms / ours_single_ms);
    }
  }
  cublasDestroy(handle);
}

// ---- the allocator in a steady loop ----------------------------------------------------------

void allocator_report() {
  Generator gen(3);
  Tensor w = (Tensor::randn({1024, 1024}, gen, DType::bf16, kCuda) * 0.02).detach();
  w.set_requires_grad(true);
  auto step = [&] {
    const Tensor x = Tensor::randn({4096, 1024}, gen, DType::bf16, kCuda);
    sum(silu(matmul(x, w)).to(DType::f32)).backward();
    w.zero_grad();
  };
  step();
  const size_t before = cuda::allocator_stats().malloc_calls;
  const double ms = median_ms(step);
  const cuda::AllocatorStats stats = cuda::allocator_stats();
  fmt::print(
      "\nCaching allocator: {} steady-state steps ({:.3f} ms each) made {} cudaMalloc "
      "calls; {} cudaMalloc in total, {:.1f} MiB reserved, peak in use {:.1f} MiB\n",
      kWarmup + kReps * kCallsPerRep, ms, stats.malloc_calls - before, stats.malloc_calls,
      stats.reserved_bytes / 1048576.0, stats.peak_in_use_bytes / 1048576.0);
}

}  // namespace

int main() try {
  cuda::require_device(0);
  cudaDeviceProp prop{};
  check_cuda_call(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  fmt::print("gpu_core on {} ({} SMs, {:.0f} GiB)\n", prop.name, prop.multiProcessorCount,
             prop.totalGlobalMem / 1073741824.0);
  bandwidth_table();
  matmul_table();
  allocator_report();
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "gpu_core: {}\n", e.what());
  return 1;
}

#endif
