// softmax / log_softmax over the rows of a contiguous [R, C] tensor (ops/softmax.cpp), one block
// per row. Forward: one online pass finds m = max and s = sum exp(x - m), a second writes
// y = exp(x - m) / s (or x - m - log s). Backward: a block sum of g * y (or of g), then
// dx = y * (g - sum) (or g - exp(y) * sum).
#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "cuda/row_reduce.cuh"

namespace dssm::cuda {
namespace {

template <typename D, typename C>
__global__ void softmax_forward_kernel(D* y, const D* x, int64_t cols, bool log) {
  const D* xr = x + blockIdx.x * cols;
  D* yr = y + blockIdx.x * cols;
  MaxSum<C> s;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s = add_value(s, C(to_compute(xr[j])));
  s = block_max_sum(s);
  if (log) {
    const C shift = s.max + log_c(s.sum);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      yr[j] = from_compute<D>(C(to_compute(xr[j])) - shift);
    }
  } else {
    const C inv_sum = C(1) / s.sum;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      yr[j] = from_compute<D>(exp_c(C(to_compute(xr[j])) - s.max) * inv_sum);
    }
  }
}

template <typename D, typename C>
__global__ void softmax_backward_kernel(D* dx, const D* g, const D* y, int64_t cols, bool log) {
  const int64_t base = blockIdx.x * cols;
  C dot = 0;  // sum(g) for log_softmax, sum(g * y) for softmax
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const C gj = to_compute(g[base + j]);
    dot += log ? gj : gj * C(to_compute(y[base + j]));
  }
  dot = block_sum(dot);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const C gj = to_compute(g[base + j]), yj = to_compute(y[base + j]);
    dx[base + j] = from_compute<D>(log ? gj - exp_c(yj) * dot : yj * (gj - dot));
  }
}

}  // namespace

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  dispatch_floating(x.dtype(), "softmax", [&]<typename T>() {
    softmax_forward_kernel<device_t<T>, compute_t<T>>
        <<<static_cast<unsigned>(rows), row_block_threads(cols), 0, current_stream()>>>(
            device_data<T>(y), device_data<T>(x), cols, log);
    DSSM_CUDA_CHECK_LAUNCH("softmax_forward_kernel");
  });
}

void softmax_backward(const Tensor& dx, const Tensor& g, const Tensor& y, bool log) {
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  dispatch_floating(y.dtype(), "softmax backward", [&]<typename T>() {
    softmax_backward_kernel<device_t<T>, compute_t<T>>
        <<<static_cast<unsigned>(rows), row_block_threads(cols), 0, current_stream()>>>(
            device_data<T>(dx), device_data<T>(g), device_data<T>(y), cols, log);
    DSSM_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
  });
}

}  // namespace dssm::cuda
