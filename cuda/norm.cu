// The fused norm kernels of ops/norm.cpp (RMSNorm, LayerNorm, group RMSNorm), one warp per
// segment of a row (the whole row when groups = 1); see ops/norm.cpp for the equations.
// Backward: every warp adds its g * xhat (and g) into its own partial row of width D, so no two
// threads ever write the same partial; a second kernel sums the partial rows into dweight/dbias.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/shape.hpp"

namespace dssm::cuda {
namespace {

constexpr unsigned kWarpsPerBlock = 8;
constexpr int64_t kMaxBackwardWarps = 1024;  // bounds the partial buffers to 1024 rows of D

// The warp's index in the grid and the number of warps in the grid.
__device__ __forceinline__ int64_t global_warp() {
  return (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
}
__device__ __forceinline__ int64_t grid_warps() {
  return int64_t{gridDim.x} * blockDim.x / 32;
}

template <typename D, typename C>
__global__ void norm_forward_kernel(D* y, C* mean, C* rstd, const D* x, const D* w, const D* b,
                                    int64_t segments, int64_t seg, int64_t groups, C eps) {
  const unsigned lane = threadIdx.x % 32;
  for (int64_t s = global_warp(); s < segments; s += grid_warps()) {
    const D* xs = x + s * seg;
    D* ys = y + s * seg;
    const int64_t col = (s % groups) * seg;  // the segment's first column, for w and b
    C mu = 0;
    if (mean) {
      for (int64_t j = lane; j < seg; j += 32) mu += to_compute(xs[j]);
      mu = warp_sum(mu) / C(seg);
      if (lane == 0) mean[s] = mu;
    }
    C var = 0;
    for (int64_t j = lane; j < seg; j += 32) {
      const C d = C(to_compute(xs[j])) - mu;
      var += d * d;
    }
    const C r = rsqrt_c(warp_sum(var) / C(seg) + eps);
    if (lane == 0) rstd[s] = r;
    for (int64_t j = lane; j < seg; j += 32) {
      C v = (C(to_compute(xs[j])) - mu) * r;
      if (w) v *= C(to_compute(w[col + j]));
      if (b) v += C(to_compute(b[col + j]));
      ys[j] = from_compute<D>(v);
    }
  }
}

template <typename D, typename C>
__global__ void norm_backward_kernel(D* dx, C* dw_parts, C* db_parts, const D* g, const D* x,
                                     const D* w, const C* mean, const C* rstd, int64_t segments,
                                     int64_t seg, int64_t groups, int64_t width) {
  const unsigned lane = threadIdx.x % 32;
  const int64_t warp = global_warp();
  C* dw_mine = dw_parts ? dw_parts + warp * width : nullptr;
  C* db_mine = db_parts ? db_parts + warp * width : nullptr;
  for (int64_t s = warp; s < segments; s += grid_warps()) {
    const int64_t base = s * seg, col = (s % groups) * seg;
    const C mu = mean ? mean[s] : C(0), r = rstd[s];
    C sum_gw = 0, sum_gw_xhat = 0;
    for (int64_t j = lane; j < seg; j += 32) {
      const C xhat = (C(to_compute(x[base + j])) - mu) * r;
      const C gw = C(to_compute(g[base + j])) * (w ? C(to_compute(w[col + j])) : C(1));
      sum_gw += gw;
      sum_gw_xhat += gw * xhat;
    }
    const C mean_gw = mean ? warp_sum(sum_gw) / C(seg) : C(0);
    const C mean_gw_xhat = warp_sum(sum_gw_xhat) / C(seg);
    for (int64_t j = lane; j < seg; j += 32) {
      const C gj = to_compute(g[base + j]);
      const C xhat = (C(to_compute(x[base + j])) - mu) * r;
      const C gw = gj * (w ? C(to_compute(w[col + j])) : C(1));
      dx[base + j] = from_compute<D>(r * (gw - mean_gw - xhat * mean_gw_xhat));
      if (dw_mine) dw_mine[col + j] += gj * xhat;
      if (db_mine) db_mine[col + j] += gj;
    }
  }
}

// out[j] = sum over p of parts[p, j], for the `count` partial rows.
template <typename D, typename C>
__global__ void sum_partials_kernel(D* out, const C* parts, int64_t count, int64_t width) {
  for (int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; j < width;
       j += int64_t{gridDim.x} * blockDim.x) {
    C total = 0;
    for (int64_t p = 0; p < count; ++p) total += parts[p * width + j];
    out[j] = from_compute<D>(total);
  }
}

template <typename T>
const device_t<T>* optional_data(const Tensor& t) {
  return t.defined() ? device_data<T>(t) : nullptr;
}
template <typename C>
C* optional_stats(const Tensor& t) {
  return t.defined() ? t.data<C>() : nullptr;
}

unsigned blocks_for_warps(int64_t warps) {
  return static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

void norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, int64_t groups, double eps) {
  const int64_t width = x.size(-1), segments = x.numel() / width * groups;
  dispatch_floating(x.dtype(), "norm", [&]<typename T>() {
    using C = compute_t<T>;
    norm_forward_kernel<device_t<T>, C>
        <<<blocks_for_warps(segments), kWarpsPerBlock * 32, 0, current_stream()>>>(
            device_data<T>(y), optional_stats<C>(mean), rstd.data<C>(), device_data<T>(x),
            optional_data<T>(weight), optional_data<T>(bias), segments, width / groups, groups,
            static_cast<C>(eps));
    DSSM_CUDA_CHECK_LAUNCH("norm_forward_kernel");
  });
}

void norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
                   const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                   int64_t groups) {
  const int64_t width = x.size(-1), segments = x.numel() / width * groups;
  const int64_t warps = std::min(segments, kMaxBackwardWarps);
  const unsigned blocks = blocks_for_warps(warps);
  const int64_t launched_warps = int64_t{blocks} * kWarpsPerBlock;
  const DType stat_dtype = compute_dtype(x.dtype());
  const Tensor dw_parts =
      dweight.defined() ? Tensor::zeros({launched_warps, width}, stat_dtype, x.device()) : Tensor();
  const Tensor db_parts =
      dbias.defined() ? Tensor::zeros({launched_warps, width}, stat_dtype, x.device()) : Tensor();
  dispatch_floating(x.dtype(), "norm backward", [&]<typename T>() {
    using C = compute_t<T>;
    norm_backward_kernel<device_t<T>, C><<<blocks, kWarpsPerBlock * 32, 0, current_stream()>>>(
        device_data<T>(dx), optional_stats<C>(dw_parts), optional_stats<C>(db_parts),
        device_data<T>(g), device_data<T>(x), optional_data<T>(weight), optional_stats<C>(mean),
        rstd.data<C>(), segments, width / groups, groups, width);
    DSSM_CUDA_CHECK_LAUNCH("norm_backward_kernel");
    const LaunchConfig launch = elementwise_launch(width);
    for (const auto& [parts, out] : {std::pair{dw_parts, dweight}, std::pair{db_parts, dbias}}) {
      if (!out.defined()) continue;
      sum_partials_kernel<device_t<T>, C><<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), parts.data<C>(), launched_warps, width);
      DSSM_CUDA_CHECK_LAUNCH("sum_partials_kernel");
    }
  });
}

}  // namespace dssm::cuda
