// retention_bench: forward + backward time of chunkwise retention (ops/retention.hpp) against
// its floors. Defaults are DenseRetNet-350M's retention shapes on CUDA (batch 8, length 2048,
// 2 heads, dk 384, dv 1536, bf16) and a smaller problem on the CPU.
//
//   retention_bench [--device cpu|cuda] [--dtype bf16|f32] [--chunk 64,128,256,512]
//                   [--batch B] [--length L] [--heads H] [--dk D] [--dv D] [--iters N]
//
// FLOP floor: the GEMM FLOPs of the chunkwise algorithm (below), without backward's recompute,
// at 790 TFLOP/s. Bytes floor: reading q, k, v and writing o in forward; reading q, k, v, dO and
// writing dq, dk, dv in backward, at 3.0 TB/s. Saved activations: the op keeps q, k, v alive for
// backward (nothing else), (2 dk + dv) * heads elements per token.
//
// "host ms" is the time the host spends queueing forward and backward (until the calls return,
// before synchronising): when it comes near "fwd+bwd ms" the GPU waits on the host, not on
// its kernels. The GPU time of each kernel is best read with Nsight Compute, e.g. `ncu
// --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel
// build/retention_bench --device cuda --chunk 512 --iters 1`.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "bench/flags.hpp"
#include "cuda/backend.hpp"
#include "ops/retention.hpp"
#if DSSM_WITH_CUDA
#include "bench/retention_mma_scores.hpp"
#include "cuda/allocator.hpp"
#include "cuda/kernels.hpp"
#include "cuda/kernels_retention.hpp"
#endif

using namespace dssm;

namespace {

struct Config {
  Device device = Device::cpu();
  DType dtype = DType::f32;
  std::vector<int64_t> chunks;
  int64_t batch = 0, length = 0, heads = 2, dk = 0, dv = 0, iters = 0;
};

Config parse(int argc, char** argv) {
  const bench::Flags f(argc, argv, "retention_bench",
                       {"--chunk", "--batch", "--length", "--heads", "--dk", "--dv", "--iters"});
  return {.device = f.device,
          .dtype = f.dtype,
          .chunks = f.list("--chunk", "64,128", "64,128,256,512"),
          .batch = f.integer("--batch", 1, 8),
          .length = f.integer("--length", 512, 2048),
          .heads = f.integer("--heads", 2, 2),
          .dk = f.integer("--dk", 128, 384),
          .dv = f.integer("--dv", 512, 1536),
          .iters = f.integer("--iters", 3, 20)};
}

// GEMM FLOPs per (batch, head) of the chunkwise algorithm over a padded length Lp, chunk C.
struct Flops {
  double forward, backward;
};
Flops chunkwise_flops(double Lp, double C, double dk, double dv) {
  const double intra_fwd = 2 * Lp * C * dk + 2 * Lp * C * dv;  // Q K^T, A V
  const double state_fwd = 2 * 2 * Lp * dk * dv;               // U = (Γ K)^T V, (Λ Q) P
  // dA, dQ_intra, dK_intra, dV_intra; dP, dQ_inter, dK_inter, dV_inter.
  const double intra_bwd = 2 * Lp * C * dv * 2 + 2 * Lp * C * dk * 2;
  const double state_bwd = 4 * 2 * Lp * dk * dv;
  return {intra_fwd + state_fwd, intra_bwd + state_bwd};
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#if DSSM_WITH_CUDA
// The masked intra-chunk product (a b^T) ⊙ M alone, both ways on the same operands [B*H*J, C,
// d]: cuBLASLt's GEMM followed by the in-place mask (what the op runs), and the tensor-core
// kernel of bench/retention_mma_scores.cu that computes the lower tiles only and masks before
// writing. Prints both times and the largest difference relative to the largest value; false
// when the two differ by more than bf16 rounding explains.
bool compare_masked_products(const Tensor& a, const Tensor& b, int64_t heads, int64_t chunks,
                             int64_t iters) {
  const int64_t C = a.size(-2);
  Generator gen(11);
  const Tensor row_scale = Tensor::rand({heads, chunks * C}, gen, DType::f32, a.device());
  const Tensor powers = Tensor::rand({heads, C}, gen, DType::f32, a.device());
  const Tensor by_gemm = Tensor::empty({a.size(0), C, C}, a.dtype(), a.device());
  const Tensor by_mma = Tensor::empty({a.size(0), C, C}, a.dtype(), a.device());
  auto time = [&](auto&& run) {
    run();
    cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) run();
    cuda::synchronize();
    return seconds_since(start) / static_cast<double>(iters);
  };
  const double gemm_s = time([&] {
    cuda::matmul(by_gemm, a, b.transpose(-1, -2));
    cuda::retention_chunk_mask(by_gemm, row_scale, powers, heads, chunks);
  });
  const double mma_s =
      time([&] { bench::mma_masked_scores(by_mma, a, b, row_scale, powers, heads, chunks); });
  const auto x = by_mma.to(DType::f32).to(Device::cpu()).to_vector<float>();
  const auto y = by_gemm.to(DType::f32).to(Device::cpu()).to_vector<float>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(x[i] - y[i])));
    scale = std::max(scale, static_cast<double>(std::abs(y[i])));
  }
  fmt::print(
      "         masked product, K {}: cuBLASLt + mask {:.3f} ms, MMA kernel {:.3f} ms ({:.2f}x), "
      "max diff {:.1e} of max\n",
      a.size(-1), gemm_s * 1e3, mma_s * 1e3, gemm_s / mma_s, diff / scale);
  return diff <= 2e-2 * scale;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse(argc, argv);
  if (c.device.is_cuda()) cuda::require_device(c.device.index);
  const double elem = static_cast<double>(dtype_size(c.dtype));
  const double bh = static_cast<double>(c.batch * c.heads);
  const double L = static_cast<double>(c.length), dk = static_cast<double>(c.dk),
               dv = static_cast<double>(c.dv);
  const double bytes = bh * L * (6 * dk + 5 * dv) * elem;
  fmt::print(
      "chunkwise retention, forward + backward: batch {}, length {}, heads {}, dk {}, dv {}, {} "
      "on {}\n",
      c.batch, c.length, c.heads, c.dk, c.dv, dtype_name(c.dtype), c.device.str());
  fmt::print("saved activations: {:.0f} bytes per token (q, k, v)\n",
             (2 * dk + dv) * static_cast<double>(c.heads) * elem);
  fmt::print("{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}  {}\n", "chunk", "fwd ms",
             "fwd+bwd ms", "host ms", "floor ms", "of floor", "TFLOP/s", "GB/s", "extra");

  Generator gen(7);
  const Tensor q = Tensor::randn({c.batch, c.heads, c.length, c.dk}, gen, c.dtype, c.device);
  const Tensor k = Tensor::randn({c.batch, c.heads, c.length, c.dk}, gen, c.dtype, c.device);
  const Tensor v = Tensor::randn({c.batch, c.heads, c.length, c.dv}, gen, c.dtype, c.device);
  const Tensor grad_out = Tensor::randn({c.batch, c.heads, c.length, c.dv}, gen, c.dtype, c.device);
  for (int64_t chunk : c.chunks) {
    const int64_t C = std::min(chunk, c.length);
    const double Lp = static_cast<double>((c.length + C - 1) / C * C);
    const Flops flops = chunkwise_flops(Lp, static_cast<double>(C), dk, dv);
    const double total_flops = bh * (flops.forward + flops.backward);
    const double floor_s = std::max(total_flops / 790e12, bytes / 3.0e12);
    std::string extra;
    double forward_s = 0, total_s = 0, host_s = 0;
    for (int64_t it = -1; it < c.iters; ++it) {  // iteration -1 warms up (and builds constants)
      Tensor qg = q.detach().set_requires_grad(), kg = k.detach().set_requires_grad(),
             vg = v.detach().set_requires_grad();
#if DSSM_WITH_CUDA
      if (c.device.is_cuda() && it == 0) cuda::reset_peak_stats();
      const size_t before = c.device.is_cuda() ? cuda::allocator_stats().in_use_bytes : 0;
#endif
      cuda::synchronize();
      const auto start = std::chrono::steady_clock::now();
      const Tensor out = retention_chunkwise(qg, kg, vg, chunk);
      const double fwd_host = seconds_since(start);
      cuda::synchronize();
      const double fwd = seconds_since(start);
#if DSSM_WITH_CUDA
      if (c.device.is_cuda() && it == 0) {
        const double held = static_cast<double>(cuda::allocator_stats().in_use_bytes - before) -
                            static_cast<double>(out.nbytes());
        extra = fmt::format("held after fwd beyond o: {:.0f} B/token",
                            held / static_cast<double>(c.batch * c.length));
      }
#endif
      const auto backward_start = std::chrono::steady_clock::now();
      out.backward(grad_out);
      const double bwd_host = seconds_since(backward_start);
      cuda::synchronize();
      if (it >= 0) forward_s += fwd, total_s += seconds_since(start), host_s += fwd_host + bwd_host;
    }
#if DSSM_WITH_CUDA
    if (c.device.is_cuda()) {
      extra +=
          fmt::format(", peak {:.2f} GiB",
                      static_cast<double>(cuda::allocator_stats().peak_in_use_bytes) / (1 << 30));
    }
#endif
    forward_s /= static_cast<double>(c.iters);
    total_s /= static_cast<double>(c.iters);
    host_s /= static_cast<double>(c.iters);
    fmt::print("{:>6} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>9.1f}% {:>12.3f} {:>10.1f}  {}\n",
               chunk, forward_s * 1e3, total_s * 1e3, host_s * 1e3, floor_s * 1e3,
               100 * floor_s / total_s, total_flops / total_s / 1e12, bytes / total_s / 1e9, extra);
#if DSSM_WITH_CUDA
    const int64_t J = (c.length + C - 1) / C;
    if (c.length % C == 0 &&
        bench::mma_masked_scores_fit(q.reshape({-1, C, c.dk}), k.reshape({-1, C, c.dk})) &&
        bench::mma_masked_scores_fit(grad_out.reshape({-1, C, c.dv}), v.reshape({-1, C, c.dv}))) {
      const bool same = compare_masked_products(q.reshape({-1, C, c.dk}), k.reshape({-1, C, c.dk}),
                                                c.heads, J, c.iters) &&
                        compare_masked_products(grad_out.reshape({-1, C, c.dv}),
                                                v.reshape({-1, C, c.dv}), c.heads, J, c.iters);
      if (!same) {
        fmt::print("the two masked products differ beyond bf16 rounding\n");
        return 1;
      }
    }
#endif
  }
  return 0;
}
