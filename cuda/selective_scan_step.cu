// CUDA one-token step of the selective scan, for generation (the forward is in
// cuda/selective_scan_forward.cu, the backward in cuda/selective_scan_backward.cu):
//   h = exp(dt A[c, n]) h + dt B[b, n] u[b, c],   y = (C . h + D u) silu(z).
// A half warp per (batch, channel), lane n holding state n, the sum over n by shuffles.
#include "cuda/selective_scan_common.cuh"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

constexpr int kStepLanes = 16;         // states per (batch, channel) pair, one lane each
constexpr int kStepPairsPerBlock = 8;  // 128 threads

// h[b, c, n] = exp(dt A[c, n]) h[b, c, n] + dt B[b, n] u[b, c];  y = C . h + D u, gated.
template <typename T, typename C>
__global__ void scan_step_kernel(ScanArgs<T> a, C* state, T* y) {
  const int64_t pair =
      static_cast<int64_t>(blockIdx.x) * kStepPairsPerBlock + threadIdx.x / kStepLanes;
  const int n = static_cast<int>(threadIdx.x % kStepLanes);
  const unsigned mask = 0xffffu << (threadIdx.x & 16u);
  if (pair >= a.batch * a.channels) return;
  const int64_t b = pair / a.channels, c = pair % a.channels;
  const bool has_state = n < a.N;
  const C u = to_compute(a.u[pair]);
  const C pre = to_compute(a.delta[pair]) + (a.bias ? to_compute(a.bias[c]) : C(0));
  const C dt = a.softplus ? math::softplus(pre) : pre;
  C out = 0;
  if (has_state) {
    C* h = state + pair * a.N + n;
    const C A_n = to_compute(a.A[c * a.N + n]);
    *h = math::exp(dt * A_n) * *h + dt * to_compute(a.B[b * a.N + n]) * u;
    out = to_compute(a.C[b * a.N + n]) * *h;
  }
  for (int offset = kStepLanes / 2; offset > 0; offset /= 2)
    out += __shfl_xor_sync(mask, out, offset, kStepLanes);
  if (n == 0) {
    out += (a.D ? to_compute(a.D[c]) : C(0)) * u;
    if (a.z) out *= math::unary_forward<UnaryOp::silu, C>(to_compute(a.z[pair]), C(0));
    y[pair] = from_compute<T>(out);
  }
}

}  // namespace

void selective_scan_step(const ScanInputs& in_t, const Tensor& state, const Tensor& y) {
  const int64_t pairs = in_t.u.size(0) * in_t.u.size(1);
  const unsigned blocks =
      static_cast<unsigned>((pairs + kStepPairsPerBlock - 1) / kStepPairsPerBlock);
  if (blocks == 0) return;
  dispatch_floating(in_t.u.dtype(), "selective_scan_step", [&]<typename S>() {
    scan_step_kernel<<<blocks, kStepLanes * kStepPairsPerBlock, 0, current_stream()>>>(
        scan_args<S>(in_t), state_data<S>(state), device_data<S>(y));
    DSSM_CUDA_CHECK_LAUNCH("scan_step_kernel");
  });
}

}  // namespace dssm::cuda
