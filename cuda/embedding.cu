// Embedding lookup and its scatter-add backward (ops/embedding.cpp), one thread per element of
// the [n, D] gathered rows. The backward adds with atomicAdd into a table in the compute type
// (f32 for bf16 and f32, f64 for f64), so repeated ids are summed correctly.
#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"

namespace dssm::cuda {
namespace {

template <typename D, typename I>
__global__ void embedding_forward_kernel(D* out, const D* weight, const I* ids, int64_t n,
                                         int64_t dim) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n * dim;
       e += int64_t{gridDim.x} * blockDim.x) {
    out[e] = weight[static_cast<int64_t>(ids[e / dim]) * dim + e % dim];
  }
}

template <typename D, typename C, typename I>
__global__ void embedding_backward_kernel(C* grad_weight, const D* grad_out, const I* ids,
                                          int64_t n, int64_t dim) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n * dim;
       e += int64_t{gridDim.x} * blockDim.x) {
    atomicAdd(grad_weight + static_cast<int64_t>(ids[e / dim]) * dim + e % dim,
              C(to_compute(grad_out[e])));
  }
}

}  // namespace

void embedding_forward(const Tensor& out, const Tensor& weight, const Tensor& ids) {
  const int64_t n = ids.numel(), dim = weight.size(1);
  const LaunchConfig launch = elementwise_launch(n * dim);
  dispatch_floating(weight.dtype(), "embedding", [&]<typename T>() {
    dispatch_index(ids.dtype(), "embedding", [&]<typename I>() {
      embedding_forward_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), device_data<T>(weight), ids.data<I>(), n, dim);
      DSSM_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
    });
  });
}

void embedding_backward(const Tensor& grad_weight, const Tensor& grad_out, const Tensor& ids) {
  const int64_t n = ids.numel(), dim = grad_weight.size(1);
  const LaunchConfig launch = elementwise_launch(n * dim);
  dispatch_floating(grad_out.dtype(), "embedding backward", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_index(ids.dtype(), "embedding backward", [&]<typename I>() {
      embedding_backward_kernel<device_t<T>, C, I>
          <<<launch.blocks, launch.threads, 0, current_stream()>>>(
              grad_weight.data<C>(), device_data<T>(grad_out), ids.data<I>(), n, dim);
      DSSM_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
    });
  });
}

}  // namespace dssm::cuda
