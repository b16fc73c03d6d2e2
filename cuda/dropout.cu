// Dropout (ops/dropout.cpp): out[i] = x[i] / (1 - p) where uniform_f32(philox(seed, first + i))
// >= p, else 0 — the same counter stream as Tensor::rand, so CPU and CUDA drop the same elements.
#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "tensor/random.hpp"

namespace dssm::cuda {
namespace {

template <typename D, typename C>
__global__ void dropout_kernel(D* out, const D* x, int64_t n, float threshold, C scale,
                               uint64_t seed, uint64_t first) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const bool keep =
        uniform_f32(philox4x32_10(seed, first + static_cast<uint64_t>(i))) >= threshold;
    out[i] = from_compute<D>(keep ? C(to_compute(x[i])) * scale : C(0));
  }
}

}  // namespace

void dropout(const Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t first) {
  const int64_t n = x.numel();
  const LaunchConfig launch = elementwise_launch(n);
  dispatch_floating(x.dtype(), "dropout", [&]<typename T>() {
    using C = compute_t<T>;
    dropout_kernel<device_t<T>, C><<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(x), n, static_cast<float>(p),
        static_cast<C>(1.0 / (1.0 - p)), seed, first);
    DSSM_CUDA_CHECK_LAUNCH("dropout_kernel");
  });
}

}  // namespace dssm::cuda
