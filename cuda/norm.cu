// The fused norm kernels of ops/norm.cpp (RMSNorm, LayerNorm, group RMSNorm); see ops/norm.cpp
// for the equations. Each row is cut into `groups` segments (the whole row when groups = 1).
// Register kernels (segments 16-byte aligned, up to 8Ki f32 / bf16): a team (a warp or a block)
// per segment, on a persistent grid where team t always handles segments of group t % groups, i.e.
// the same columns: it reads each segment of x (and g) once into registers, and the backward sums
// its g * xhat (and g) in registers, writing one partial row per team.
// Looped kernels (any shape): one warp per segment, x re-read per pass; the backward adds into
// its warp's own partial row of width D. A last kernel sums the partial rows into dweight/dbias.
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

// Forward on the register layout: for each segment s handled by the team, mean (centred only)
// and rstd from the registers, then y = (x - mu) * rstd * w + b written once.
template <typename D, typename C, bool kBlockTeam, int kPacks, bool kCentred>
__global__ void __launch_bounds__(kMaxTeamThreads)
    norm_forward_rows_kernel(D* y, C* mean, C* rstd, const D* x, const D* w, const D* b,
                             int64_t rows, int64_t seg, int64_t groups, int64_t teams_per_group,
                             C eps) {
  constexpr int kVec = Pack<D>::kSize;
  const int64_t team = team_index(), group = team % groups, first_row = team / groups;
  if (first_row >= teams_per_group) return;  // a whole team (warp or block) leaves together
  const int64_t packs = seg / kVec, col = group * seg;
  for (int64_t r = first_row; r < rows; r += teams_per_group) {
    const int64_t s = r * groups + group;
    C v[kPacks][kVec];
    load_row<kPacks>(v, x + s * seg, packs, C(0));
    C mu = 0;
    if constexpr (kCentred) {
#pragma unroll
      for (int i = 0; i < kPacks; ++i) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) mu += v[i][k];
      }
      mu = team_sum<kBlockTeam>(mu) / C(seg);
    }
    C var = 0;
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
      if (!pack_valid(i, packs)) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const C d = v[i][k] - mu;
        var += d * d;
      }
    }
    const C rs = rsqrt_c(team_sum<kBlockTeam>(var) / C(seg) + eps);
    if (threadIdx.x == 0) {
      rstd[s] = rs;
      if constexpr (kCentred) mean[s] = mu;
    }
    // w and b are re-read for each segment (from L1: every team of the SM reads the same ones)
    // rather than held in registers, which would halve the resident teams.
    C wb[kPacks][kVec];
    load_row<kPacks>(wb, w ? w + col : nullptr, packs, C(1));
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = (v[i][k] - mu) * rs * wb[i][k];
    }
    if (kCentred && b) {
      load_row<kPacks>(wb, b + col, packs, C(0));
#pragma unroll
      for (int i = 0; i < kPacks; ++i) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[i][k] += wb[i][k];
      }
    }
    store_row<kPacks>(y + s * seg, v, packs);
  }
}

// Backward on the register layout: dx for each segment from x and g read once; the team's
// g * xhat and g summed in registers over its segments, then written to partial row first_row
// (of [teams_per_group, D]) at the team's columns.
template <typename D, typename C, bool kBlockTeam, int kPacks, bool kCentred>
__global__ void __launch_bounds__(kMaxTeamThreads)
    norm_backward_rows_kernel(D* dx, C* dw_parts, C* db_parts, const D* g, const D* x, const D* w,
                              const C* mean, const C* rstd, int64_t rows, int64_t seg,
                              int64_t groups, int64_t teams_per_group) {
  constexpr int kVec = Pack<D>::kSize;
  const int64_t team = team_index(), group = team % groups, first_row = team / groups;
  if (first_row >= teams_per_group) return;
  const int64_t packs = seg / kVec, col = group * seg;
  // db only for the centred norm (LayerNorm), the only one with a bias.
  C dw[kPacks][kVec] = {}, db[kCentred ? kPacks : 1][kCentred ? kVec : 1] = {};
  for (int64_t r = first_row; r < rows; r += teams_per_group) {
    const int64_t s = r * groups + group;
    C xv[kPacks][kVec], gv[kPacks][kVec], wv[kPacks][kVec];
    load_row<kPacks>(xv, x + s * seg, packs, C(0));
    load_row<kPacks>(gv, g + s * seg, packs, C(0));  // 0 past the end: no term below counts
    load_row<kPacks>(wv, w ? w + col : nullptr, packs, C(1));  // from L1 after the first row
    const C mu = kCentred ? mean[s] : C(0), rs = rstd[s];
    C sum_gw = 0, sum_gw_xhat = 0;
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        xv[i][k] = (xv[i][k] - mu) * rs;  // xhat
        dw[i][k] += gv[i][k] * xv[i][k];
        if constexpr (kCentred) db[i][k] += gv[i][k];
        gv[i][k] *= wv[i][k];  // gw
        sum_gw += gv[i][k];
        sum_gw_xhat += gv[i][k] * xv[i][k];
      }
    }
    const C mean_gw = kCentred ? team_sum<kBlockTeam>(sum_gw) / C(seg) : C(0);
    const C mean_gw_xhat = team_sum<kBlockTeam>(sum_gw_xhat) / C(seg);
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        gv[i][k] = rs * (gv[i][k] - mean_gw - xv[i][k] * mean_gw_xhat);
      }
    }
    store_row<kPacks>(dx + s * seg, gv, packs);
  }
  const int64_t width = seg * groups;
#pragma unroll
  for (int i = 0; i < kPacks; ++i) {
    if (!pack_valid(i, packs)) continue;
    const int64_t j = col + (threadIdx.x + int64_t{i} * blockDim.x) * kVec;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      if (dw_parts) dw_parts[first_row * width + j + k] = dw[i][k];
      if constexpr (kCentred) {
        if (db_parts) db_parts[first_row * width + j + k] = db[i][k];
      }
    }
  }
}

// out[j] = sum over p of parts[p, j], for the `count` partial rows: a block of (32, 8) threads
// per 32 columns, the 8 rows of threads summing every 8th partial row, then added in order.
template <typename D, typename C>
__global__ void sum_partials_kernel(D* out, const C* parts, int64_t count, int64_t width) {
  __shared__ C column_sums[8][33];
  const int64_t j = blockIdx.x * int64_t{32} + threadIdx.x;
  C total = 0;
  if (j < width) {
    for (int64_t p = threadIdx.y; p < count; p += 8) total += parts[p * width + j];
  }
  column_sums[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y == 0 && j < width) {
    for (int y = 1; y < 8; ++y) total += column_sums[y][threadIdx.x];
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

// Teams per group of a persistent register kernel: as many as fill every SM at the kernel's
// occupancy (at least one per group), and no more than there are rows.
template <typename Kernel>
int64_t teams_per_group(Kernel kernel, const RowPlan& plan, int64_t rows, int64_t groups) {
  int blocks_per_sm = 0;
  DSSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks_per_sm, kernel, static_cast<int>(plan.threads * plan.teams_per_block), 0));
  const int64_t resident_teams =
      int64_t{std::max(blocks_per_sm, 1)} * multiprocessor_count() * plan.teams_per_block;
  return std::max<int64_t>(1, std::min(rows, resident_teams / groups));
}

unsigned persistent_grid(const RowPlan& plan, int64_t teams) {
  return static_cast<unsigned>((teams + plan.teams_per_block - 1) / plan.teams_per_block);
}

}  // namespace

void norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, int64_t groups, double eps) {
  const int64_t width = x.size(-1), rows = x.numel() / width, segments = rows * groups;
  const int64_t seg = width / groups;
  dispatch_floating(x.dtype(), "norm", [&]<typename T>() {
    using C = compute_t<T>;
    using D = device_t<T>;
    const RowPlan plan =
        plan_rows(seg, sizeof(D),
                  {y.raw_data(), x.raw_data(), optional_data<T>(weight), optional_data<T>(bias)});
    if (plan.fits) {
      dispatch_plan<D>(plan, [&]<bool kBlockTeam, int kPacks>() {
        const auto kernel = mean.defined()
                                ? norm_forward_rows_kernel<D, C, kBlockTeam, kPacks, true>
                                : norm_forward_rows_kernel<D, C, kBlockTeam, kPacks, false>;
        const int64_t per_group = teams_per_group(kernel, plan, rows, groups);
        kernel<<<persistent_grid(plan, per_group * groups),
                 dim3(plan.threads, plan.teams_per_block), 0, current_stream()>>>(
            device_data<T>(y), optional_stats<C>(mean), rstd.data<C>(), device_data<T>(x),
            optional_data<T>(weight), optional_data<T>(bias), rows, seg, groups, per_group,
            static_cast<C>(eps));
        DSSM_CUDA_CHECK_LAUNCH("norm_forward_rows_kernel");
      });
      return;
    }
    norm_forward_kernel<D, C>
        <<<blocks_for_warps(segments), kWarpsPerBlock * 32, 0, current_stream()>>>(
            device_data<T>(y), optional_stats<C>(mean), rstd.data<C>(), device_data<T>(x),
            optional_data<T>(weight), optional_data<T>(bias), segments, seg, groups,
            static_cast<C>(eps));
    DSSM_CUDA_CHECK_LAUNCH("norm_forward_kernel");
  });
}

void norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
                   const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                   int64_t groups) {
  const int64_t width = x.size(-1), rows = x.numel() / width, segments = rows * groups;
  const int64_t seg = width / groups;
  const DType stat_dtype = compute_dtype(x.dtype());
  dispatch_floating(x.dtype(), "norm backward", [&]<typename T>() {
    using C = compute_t<T>;
    using D = device_t<T>;
    // parts: the partial rows (count of them) of dweight and dbias, summed at the end.
    Tensor dw_parts, db_parts;
    int64_t count = 0;
    // At most 8 values per thread and array while the segment fits, else 16: x, g, w and the
    // dweight sums all live in registers, and with 16 each (113 registers) an f32 row of 4096 ran
    // at 0.67 of copy on the H100, with 8 (64 registers, 512 threads) at 0.95.
    const std::initializer_list<const void*> arrays = {dx.raw_data(), g.raw_data(), x.raw_data(),
                                                       optional_data<T>(weight)};
    RowPlan plan = plan_rows(seg, sizeof(D), arrays, 8);
    if (!plan.fits) plan = plan_rows(seg, sizeof(D), arrays);
    if (plan.fits) {
      dispatch_plan<D>(plan, [&]<bool kBlockTeam, int kPacks>() {
        const auto kernel = mean.defined()
                                ? norm_backward_rows_kernel<D, C, kBlockTeam, kPacks, true>
                                : norm_backward_rows_kernel<D, C, kBlockTeam, kPacks, false>;
        count = teams_per_group(kernel, plan, rows, groups);
        // Every partial row is written whole by the kernel: no zeroing needed.
        if (dweight.defined()) dw_parts = Tensor::empty({count, width}, stat_dtype, x.device());
        if (dbias.defined()) db_parts = Tensor::empty({count, width}, stat_dtype, x.device());
        kernel<<<persistent_grid(plan, count * groups), dim3(plan.threads, plan.teams_per_block), 0,
                 current_stream()>>>(
            device_data<T>(dx), optional_stats<C>(dw_parts), optional_stats<C>(db_parts),
            device_data<T>(g), device_data<T>(x), optional_data<T>(weight), optional_stats<C>(mean),
            rstd.data<C>(), rows, seg, groups, count);
        DSSM_CUDA_CHECK_LAUNCH("norm_backward_rows_kernel");
      });
    } else {
      const unsigned blocks = blocks_for_warps(std::min(segments, kMaxBackwardWarps));
      count = int64_t{blocks} * kWarpsPerBlock;
      if (dweight.defined()) dw_parts = Tensor::zeros({count, width}, stat_dtype, x.device());
      if (dbias.defined()) db_parts = Tensor::zeros({count, width}, stat_dtype, x.device());
      norm_backward_kernel<D, C><<<blocks, kWarpsPerBlock * 32, 0, current_stream()>>>(
          device_data<T>(dx), optional_stats<C>(dw_parts), optional_stats<C>(db_parts),
          device_data<T>(g), device_data<T>(x), optional_data<T>(weight), optional_stats<C>(mean),
          rstd.data<C>(), segments, seg, groups, width);
      DSSM_CUDA_CHECK_LAUNCH("norm_backward_kernel");
    }
    for (const auto& [parts, out] : {std::pair{dw_parts, dweight}, std::pair{db_parts, dbias}}) {
      if (!out.defined()) continue;
      sum_partials_kernel<D, C>
          <<<static_cast<unsigned>((width + 31) / 32), dim3(32, 8), 0, current_stream()>>>(
              device_data<T>(out), parts.data<C>(), count, width);
      DSSM_CUDA_CHECK_LAUNCH("sum_partials_kernel");
    }
  });
}

}  // namespace dssm::cuda
