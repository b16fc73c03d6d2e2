// copy_strided: dst[i] = convert(src[i]) for two tensors of one shape on one CUDA device, with any
// strides (views, broadcasts) and any pair of dtypes. Conversions follow the CPU's
// (tensor/copy.cpp): through the source's compute type, bf16 rounding to nearest even.
#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::cuda {
namespace {

template <typename To, typename From>
__device__ __forceinline__ To convert(From value) {
  if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return convert<To>(__bfloat162float(value));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

// Both dense: element i to element i.
template <typename To, typename From>
__global__ void convert_dense(To* dst, const From* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = convert<To>(src[i]);
  }
}

// Element i (row-major over the shape) sits at dst_index.offset(i) / src_index.offset(i).
template <typename To, typename From>
__global__ void convert_strided(To* dst, StridedIndexer dst_index, const From* src,
                                StridedIndexer src_index, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[dst_index.offset(i)] = convert<To>(src[src_index.offset(i)]);
  }
}

}  // namespace

void copy_strided(const Tensor& dst, const Tensor& src) {
  DSSM_CHECK(dst.shape() == src.shape() && dst.device() == src.device(), "copy",
             "expected one shape on one device, got {} and {}", describe(dst), describe(src));
  const int64_t n = dst.numel();
  if (n == 0) return;
  require_device(dst.device().index);
  const bool dense = dst.is_contiguous() && src.is_contiguous();
  if (dense && dst.dtype() == src.dtype()) {
    DSSM_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(),
                                    cudaMemcpyDeviceToDevice, current_stream()));
    return;
  }
  const LaunchConfig launch = elementwise_launch(n);
  dispatch_all(dst.dtype(), [&]<typename To>() {
    dispatch_all(src.dtype(), [&]<typename From>() {
      if (dense) {
        convert_dense<<<launch.blocks, launch.threads, 0, current_stream()>>>(
            device_data<To>(dst), device_data<From>(src), n);
      } else {
        convert_strided<<<launch.blocks, launch.threads, 0, current_stream()>>>(
            device_data<To>(dst), make_indexer(dst.shape(), dst.strides()), device_data<From>(src),
            make_indexer(src.shape(), src.strides()), n);
      }
      DSSM_CUDA_CHECK_LAUNCH("copy_strided");
    });
  });
}

}  // namespace dssm::cuda
