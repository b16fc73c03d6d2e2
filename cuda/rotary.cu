// CUDA kernel of rotary position encoding (ops/rotary.cpp): one thread per pair of channels,
// angles in float64 so that large positions keep their precision.
#include <cmath>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels_retention.hpp"

namespace dssm::cuda {
namespace {

// (y_2i, y_2i+1) = (x_2i cos - x_2i+1 sin, x_2i+1 cos + x_2i sin) at angle sign (offset + l)
// theta_i, theta_i = base^(-i / divisor) (divisor pairs - 1 for RetNet, pairs for LLaMA).
template <typename T>
__global__ void rotary_kernel(T* out, const T* x, int64_t length, int64_t pairs, int64_t offset,
                              double sign, double log_base, double divisor, int64_t total) {
  using Acc = decltype(to_compute(x[0]));
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < total;
       p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = p % pairs, l = p / pairs % length;
    const double theta = exp(-(static_cast<double>(i) / divisor) * log_base);
    double s, c;
    sincos(sign * static_cast<double>(offset + l) * theta, &s, &c);
    const Acc x0 = to_compute(x[2 * p]), x1 = to_compute(x[2 * p + 1]);
    const Acc cc = static_cast<Acc>(c), ss = static_cast<Acc>(s);
    // The CPU kernel's formula, fused multiply-adds included (ops/rotary.cpp).
    out[2 * p] = from_compute<T>(fma(x0, cc, -(x1 * ss)));
    out[2 * p + 1] = from_compute<T>(fma(x1, cc, x0 * ss));
  }
}

}  // namespace

void rotary(const Tensor& out, const Tensor& x, int64_t offset, bool inverse, double base,
            double divisor) {
  DSSM_CHECK(out.is_contiguous() && x.is_contiguous(), "rotary",
             "CUDA kernel expects contiguous tensors, got {} and {}", describe(out), describe(x));
  require_device(x.device().index);
  const int64_t total = x.numel() / 2;
  if (total == 0) return;
  dispatch_floating(x.dtype(), "rotary", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    rotary_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(x), x.size(1), x.size(2) / 2, offset,
        inverse ? -1.0 : 1.0, std::log(base), divisor, total);
    DSSM_CUDA_CHECK_LAUNCH("rotary");
  });
}

}  // namespace dssm::cuda
