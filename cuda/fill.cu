// fill: every element of a tensor (any strides) set to one value, converted on the host exactly
// as the CPU does (tensor/copy.cpp), so the bits match.
#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::cuda {
namespace {

// T is the storage type (dssm::bf16 for bf16): the kernel only moves bits.
template <typename T>
__global__ void fill_dense(T* dst, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = value;
  }
}

template <typename T>
__global__ void fill_strided(T* dst, StridedIndexer index, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[index.offset(i)] = value;
  }
}

}  // namespace

void fill(const Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  require_device(dst.device().index);
  const LaunchConfig launch = elementwise_launch(n);
  dispatch_all(dst.dtype(), [&]<typename T>() {
    const T v = static_cast<T>(static_cast<compute_t<T>>(value));
    if (dst.is_contiguous()) {
      fill_dense<<<launch.blocks, launch.threads, 0, current_stream()>>>(dst.data<T>(), v, n);
    } else {
      fill_strided<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          dst.data<T>(), make_indexer(dst.shape(), dst.strides()), v, n);
    }
    DSSM_CUDA_CHECK_LAUNCH("fill");
  });
}

}  // namespace dssm::cuda
