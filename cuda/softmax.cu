// softmax / log_softmax over the rows of a contiguous [R, C] tensor (ops/softmax.cpp).
// Forward: m = max x, s = sum exp(x - m), then y = exp(x - m) / s (or x - m - log s).
// Backward: dot = sum(g * y) (or sum(g)), then dx = y * (g - dot) (or g - exp(y) * dot).
// 16-byte-aligned rows of up to 8Ki f32 / bf16 (4Ki f64) use the register kernels (a warp or a
// block per row, the row read once into registers with 16-byte loads, reduced, then written);
// others the looped kernels (one block per row, the row read twice).
#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "cuda/row_reduce.cuh"

namespace dssm::cuda {
namespace {

// y = softmax(x) (or log_softmax) for each row, the row held in registers between the passes.
template <typename D, typename C, bool kBlockTeam, int kPacks>
__global__ void __launch_bounds__(kMaxTeamThreads)
    softmax_forward_rows_kernel(D* y, const D* x, int64_t rows, int64_t cols, bool log) {
  constexpr int kVec = Pack<D>::kSize;
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();
  const int64_t packs = cols / kVec;
  for (int64_t r = team_index(); r < rows; r += team_count()) {
    C v[kPacks][kVec];
    load_row<kPacks>(v, x + r * cols, packs, kNegInf);
    C m = kNegInf;
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) m = max(m, v[i][k]);
    }
    m = team_max<kBlockTeam>(m);
    C s = 0;
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
      if (!pack_valid(i, packs)) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const C e = exp_c(v[i][k] - m);
        s += e;
        if (!log) v[i][k] = e;
      }
    }
    s = team_sum<kBlockTeam>(s);
    if (log) {
      const C shift = m + log_c(s);
#pragma unroll
      for (int i = 0; i < kPacks; ++i) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[i][k] -= shift;
      }
    } else {
      const C inv_sum = C(1) / s;
#pragma unroll
      for (int i = 0; i < kPacks; ++i) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[i][k] *= inv_sum;
      }
    }
    store_row<kPacks>(y + r * cols, v, packs);
  }
}

// dx = y * (g - sum(g * y)) (or g - exp(y) * sum(g)) for each row, g and y held in registers.
template <typename D, typename C, bool kBlockTeam, int kPacks>
__global__ void __launch_bounds__(kMaxTeamThreads)
    softmax_backward_rows_kernel(D* dx, const D* g, const D* y, int64_t rows, int64_t cols,
                                 bool log) {
  constexpr int kVec = Pack<D>::kSize;
  const int64_t packs = cols / kVec;
  for (int64_t r = team_index(); r < rows; r += team_count()) {
    C gv[kPacks][kVec], yv[kPacks][kVec];
    load_row<kPacks>(gv, g + r * cols, packs, C(0));
    load_row<kPacks>(yv, y + r * cols, packs, C(0));
    C dot = 0;
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) dot += log ? gv[i][k] : gv[i][k] * yv[i][k];
    }
    dot = team_sum<kBlockTeam>(dot);
#pragma unroll
    for (int i = 0; i < kPacks; ++i) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        gv[i][k] = log ? gv[i][k] - exp_c(yv[i][k]) * dot : yv[i][k] * (gv[i][k] - dot);
      }
    }
    store_row<kPacks>(dx + r * cols, gv, packs);
  }
}

// The looped forward for any row: one online pass for (m, s), a second pass writes y.
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

// The looped backward for any row: a block sum of g * y (or g), then dx.
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

// The grid of a register kernel giving one team to each of `rows` rows.
dim3 row_grid(const RowPlan& plan, int64_t rows) {
  return dim3(static_cast<unsigned>((rows + plan.teams_per_block - 1) / plan.teams_per_block));
}

}  // namespace

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  dispatch_floating(x.dtype(), "softmax", [&]<typename T>() {
    using D = device_t<T>;
    const RowPlan plan = plan_rows(cols, sizeof(D), {y.raw_data(), x.raw_data()});
    if (plan.fits) {
      dispatch_plan<D>(plan, [&]<bool kBlockTeam, int kPacks>() {
        softmax_forward_rows_kernel<D, compute_t<T>, kBlockTeam, kPacks>
            <<<row_grid(plan, rows), dim3(plan.threads, plan.teams_per_block), 0,
               current_stream()>>>(device_data<T>(y), device_data<T>(x), rows, cols, log);
        DSSM_CUDA_CHECK_LAUNCH("softmax_forward_rows_kernel");
      });
      return;
    }
    softmax_forward_kernel<D, compute_t<T>>
        <<<static_cast<unsigned>(rows), row_block_threads(cols), 0, current_stream()>>>(
            device_data<T>(y), device_data<T>(x), cols, log);
    DSSM_CUDA_CHECK_LAUNCH("softmax_forward_kernel");
  });
}

void softmax_backward(const Tensor& dx, const Tensor& g, const Tensor& y, bool log) {
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  dispatch_floating(y.dtype(), "softmax backward", [&]<typename T>() {
    using D = device_t<T>;
    const RowPlan plan = plan_rows(cols, sizeof(D), {dx.raw_data(), g.raw_data(), y.raw_data()});
    if (plan.fits) {
      dispatch_plan<D>(plan, [&]<bool kBlockTeam, int kPacks>() {
        softmax_backward_rows_kernel<D, compute_t<T>, kBlockTeam, kPacks>
            <<<row_grid(plan, rows), dim3(plan.threads, plan.teams_per_block), 0,
               current_stream()>>>(device_data<T>(dx), device_data<T>(g), device_data<T>(y), rows,
                                   cols, log);
        DSSM_CUDA_CHECK_LAUNCH("softmax_backward_rows_kernel");
      });
      return;
    }
    softmax_backward_kernel<D, compute_t<T>>
        <<<static_cast<unsigned>(rows), row_block_threads(cols), 0, current_stream()>>>(
            device_data<T>(dx), device_data<T>(g), device_data<T>(y), cols, log);
    DSSM_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
  });
}

}  // namespace dssm::cuda
