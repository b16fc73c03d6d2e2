// attention_bench: forward and forward + backward time of causal attention on CUDA in bf16:
// cuDNN's fused flash attention (causal_attention) against the cuBLAS composite
// (causal_attention_composite: bmm, masked_fill, softmax, bmm), at LLaMA-350M's attention shape
// (16 heads of 64, 2048 tokens) for batch 4 and 8 by default.
//
//   attention_bench [--device cuda:0] [--dtype bf16] [--batch 4,8] [--heads 16] [--length 2048]
//                   [--dim 64] [--iters 20]
//
// Each time is the mean of N synchronised iterations after one warm-up (which also builds cuDNN's
// plans). TFLOP/s counts the causal half of the GEMMs: forward 2 B H T^2 d (Q K^T and P V),
// backward 2.5 times that (Q K^T again, dV, dP, dQ, dK). "peak GiB" is the allocator's peak over
// the timed iterations, inputs included.
#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "bench/flags.hpp"
#include "cuda/backend.hpp"
#include "ops/attention.hpp"
#if DSSM_WITH_CUDA
#include "cuda/allocator.hpp"
#endif

using namespace dssm;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Timing {
  double forward_ms = 0, total_ms = 0, peak_gib = 0;
};

using Attention = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, int64_t);

Timing time_attention(Attention attention, const std::vector<Tensor>& inputs,
                      const Tensor& grad_out, int64_t iters) {
  Timing t;
  for (int64_t it = -1; it < iters; ++it) {  // iteration -1 warms up
    std::vector<Tensor> leaves;
    for (const Tensor& x : inputs) leaves.push_back(x.detach().set_requires_grad());
#if DSSM_WITH_CUDA
    if (it == 0) cuda::reset_peak_stats();
#endif
    cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    const Tensor out = attention(leaves[0], leaves[1], leaves[2], 0);
    cuda::synchronize();
    const double forward = seconds_since(start);
    out.backward(grad_out);
    cuda::synchronize();
    if (it >= 0) t.forward_ms += forward * 1e3, t.total_ms += seconds_since(start) * 1e3;
  }
  t.forward_ms /= static_cast<double>(iters);
  t.total_ms /= static_cast<double>(iters);
#if DSSM_WITH_CUDA
  t.peak_gib = static_cast<double>(cuda::allocator_stats().peak_in_use_bytes) / (1 << 30);
#endif
  return t;
}

void print_row(const char* path, const Timing& t, double forward_flops) {
  fmt::print("  {:<10} {:>10.3f} {:>12.3f} {:>12.1f} {:>16.1f} {:>10.2f}\n", path, t.forward_ms,
             t.total_ms, forward_flops / t.forward_ms / 1e9, 3.5 * forward_flops / t.total_ms / 1e9,
             t.peak_gib);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Flags flags(argc, argv, "attention_bench",
                           {"--batch", "--heads", "--length", "--dim", "--iters"});
  const Device device = Device::parse(flags.text("--device", "cuda"));
  const DType dtype = dtype_from_name(flags.text("--dtype", "bf16"));
  const std::vector<int64_t> batches = flags.list("--batch", "4,8", "4,8");
  const int64_t heads = flags.integer("--heads", 16, 16),
                length = flags.integer("--length", 2048, 2048),
                dim = flags.integer("--dim", 64, 64), iters = flags.integer("--iters", 20, 20);
  if (!device.is_cuda() || !cuda::available()) {
    fmt::print(stderr, "attention_bench: needs a CUDA device (cuDNN against cuBLAS)\n");
    return 1;
  }
  cuda::require_device(device.index);
  fmt::print("causal attention, {} on {}: heads {}, length {}, head dim {}, mean of {} iters\n",
             dtype_name(dtype), device.str(), heads, length, dim, iters);
  Generator gen(7);
  for (int64_t batch : batches) {
    const Shape shape{batch, heads, length, dim};
    std::vector<Tensor> inputs;
    for (int i = 0; i < 3; ++i) inputs.push_back(Tensor::randn(shape, gen, dtype, device));
    const Tensor grad_out = Tensor::randn(shape, gen, dtype, device);
    const bool fused = causal_attention_is_fused(inputs[0], inputs[1], inputs[2], 0);
    const double forward_flops =
        2.0 * static_cast<double>(batch * heads * length) * static_cast<double>(length * dim);
    fmt::print("\nbatch {}{}\n", batch,
               fused ? "" : "  (cuDNN refused: both rows are the composite)");
    fmt::print("  {:<10} {:>10} {:>12} {:>12} {:>16} {:>10}\n", "path", "fwd ms", "fwd+bwd ms",
               "fwd TFLOP/s", "fwd+bwd TFLOP/s", "peak GiB");
    const Timing cudnn = time_attention(causal_attention, inputs, grad_out, iters);
    const Timing cublas = time_attention(causal_attention_composite, inputs, grad_out, iters);
    print_row("cudnn", cudnn, forward_flops);
    print_row("composite", cublas, forward_flops);
    fmt::print("  composite / cudnn: forward {:.2f}x, forward + backward {:.2f}x\n",
               cublas.forward_ms / cudnn.forward_ms, cublas.total_ms / cudnn.total_ms);
  }
  return 0;
}
