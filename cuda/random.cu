// fill_random: the counter-based stream of tensor/random.hpp on the GPU. Element i takes
// philox4x32_10(seed, first + i), turned into a uniform or a normal by the very functions the
// CPU uses, so one seed gives the same uniform bits on both devices (normals may differ in the
// last ulp, the GPU's logf/cosf not being glibc's).
#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::cuda {
namespace {

// T is the storage type (dssm::bf16 rounds exactly as on the CPU).
template <typename T, bool kNormal>
__global__ void philox_fill(T* dst, uint64_t seed, uint64_t first, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const PhiloxWords r = philox4x32_10(seed, first + static_cast<uint64_t>(i));
    if constexpr (std::is_same_v<T, double>) {
      dst[i] = kNormal ? normal_f64(r) : uniform_f64(r);
    } else {
      dst[i] = static_cast<T>(kNormal ? normal_f32(r) : uniform_f32(r));
    }
  }
}

}  // namespace

void fill_random(const Tensor& dst, uint64_t seed, uint64_t first, bool normal) {
  DSSM_CHECK(dst.is_contiguous(), "rand", "expected a contiguous destination, got a view {}",
             describe(dst));
  const int64_t n = dst.numel();
  if (n == 0) return;
  require_device(dst.device().index);
  const LaunchConfig launch = elementwise_launch(n);
  dispatch_floating(dst.dtype(), "rand", [&]<typename T>() {
    if (normal) {
      philox_fill<T, true>
          <<<launch.blocks, launch.threads, 0, current_stream()>>>(dst.data<T>(), seed, first, n);
    } else {
      philox_fill<T, false>
          <<<launch.blocks, launch.threads, 0, current_stream()>>>(dst.data<T>(), seed, first, n);
    }
    DSSM_CUDA_CHECK_LAUNCH("fill_random");
  });
}

}  // namespace dssm::cuda
