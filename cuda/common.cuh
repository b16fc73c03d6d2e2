// What every CUDA kernel file includes: error checking that names the call, file and line; the
// current stream; a launch configuration for elementwise work; the device types of our dtypes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

namespace dssm::cuda {

// Throws dssm::Error("<call> failed at <file>:<line>: <CUDA's message>").
void check_cuda(cudaError_t status, const char* call, const char* file, int line);
#define DSSM_CUDA_CHECK(call) ::dssm::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After a kernel launch: reports a bad launch configuration at once, naming the kernel.
#define DSSM_CUDA_CHECK_LAUNCH(kernel_name) \
  ::dssm::cuda::check_cuda(cudaGetLastError(), kernel_name, __FILE__, __LINE__)

cudaStream_t current_stream();

// A grid for n independent elements with grid-stride loops: enough blocks to fill the GPU.
struct LaunchConfig {
  unsigned blocks;
  unsigned threads;
};
LaunchConfig elementwise_launch(int64_t n, unsigned threads = 256);
int multiprocessor_count();         // of the current device
int max_shared_memory_per_block();  // bytes a kernel may opt in to, on the current device

// The element type a kernel sees for each of our storage types: bf16 is CUDA's __nv_bfloat16.
template <typename T> struct device_type { using type = T; };
template <> struct device_type<bf16> { using type = __nv_bfloat16; };
template <typename T> using device_t = typename device_type<T>::type;

// Loads and stores in the compute type (float for bf16).
__device__ __forceinline__ float to_compute(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_compute(float v) { return v; }
__device__ __forceinline__ double to_compute(double v) { return v; }
template <typename T, typename C>
__device__ __forceinline__ T from_compute(C v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Pointer to a tensor's first element as the kernel's element type.
template <typename T>
device_t<T>* device_data(const Tensor& t) {
  return reinterpret_cast<device_t<T>*>(t.data<T>());
}

// Up to 8 dims of shape and strides passed by value to a kernel, for strided/broadcast access.
struct StridedIndexer {
  static constexpr int kMaxDims = 8;
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  // Offset (in elements) of the element with row-major linear index i.
  __host__ __device__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (i % sizes[d]) * strides[d];
      i /= sizes[d];
    }
    return off;
  }
};
// The indexer of a tensor read as `shape` (broadcast strides) — throws past kMaxDims dims.
StridedIndexer make_indexer(const Shape& shape, const Strides& strides);
// The indexer of tensor t read as the broadcast shape `target` (NumPy rules: missing leading dims
// and size-1 dims are repeated, i.e. get stride 0).
StridedIndexer make_broadcast_indexer(const Tensor& t, const Shape& target);

}  // namespace dssm::cuda
