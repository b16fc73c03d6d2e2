// CUDA kernels of retention (ops/retention_*.cpp): the decay mask of the parallel form; for the
// chunkwise form the in-place intra-chunk mask, the per-row decays and the decayed scan over chunk
// states (its GEMMs are cuda::matmul's, cuda/blas.cu); the fused recurrent step. Decays
// are computed in float64 as exp(p log gamma) (here or in the host's tables).
//
// The elementwise kernels move 16 bytes per load and store (8 bf16, 4 f32, 2 f64) when the rows
// allow it, and index in 32 bits when the tensor is small enough (64-bit division is slow).
#include <algorithm>
#include <cmath>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels_retention.hpp"

namespace dssm::cuda {
namespace {

// One value per head, passed to a kernel by value (no device copy, no synchronisation).
constexpr int kMaxHeads = 64;
struct PerHead {
  double value[kMaxHeads];
};

PerHead per_head(const std::vector<double>& values, const char* op) {
  DSSM_CHECK(values.size() <= kMaxHeads, op, "expected at most {} heads on CUDA, got {}", kMaxHeads,
             values.size());
  PerHead p{};
  for (size_t h = 0; h < values.size(); ++h) p.value[h] = values[h];
  return p;
}

// Checks on the hot path build their messages only on failure (describe() formats strings).
void check_dense(const char* op, const Tensor& t) {
  if (!t.is_contiguous())
    fail(op, "CUDA kernel expects contiguous tensors, got a view {}", describe(t));
}

// mask[h, n, m] = r_n gamma_h^(n-m) for m <= n, else 0 (r_n = 1 without normalisation).
template <typename T>
__global__ void decay_mask_kernel(T* mask, int64_t length, int64_t total, PerHead log_gamma,
                                  PerHead gamma, bool normalize) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t m = i % length, n = i / length % length, h = i / (length * length);
    double value = 0.0;
    if (m <= n) {
      value = exp(static_cast<double>(n - m) * log_gamma.value[h]);
      if (normalize) {
        const double g = gamma.value[h];
        const double rows =
            g == 1.0 ? static_cast<double>(n + 1)
                     : -expm1(static_cast<double>(n + 1) * log_gamma.value[h]) / (1.0 - g);
        value *= rsqrt(rows);
      }
    }
    mask[i] = from_compute<T>(value);
  }
}

// kVec consecutive elements moved as one aligned load or store.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// The compute type of a kernel element type (float for bf16).
template <typename T>
struct acc_type {
  using type = T;
};
template <>
struct acc_type<__nv_bfloat16> {
  using type = float;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

// Grid-stride loop over [0, n) in Index arithmetic.
#define DSSM_GRID_LOOP(Index, i, n)                                                \
  for (Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + \
                 static_cast<Index>(threadIdx.x);                                  \
       i < (n); i += static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x))

// Exclusive decayed scan over chunks, one thread per (batch*head, kVec elements of the state):
// out[j] = sum over earlier chunks (later ones when reverse) of decay^(distance - 1) in[j'].
// Consecutive threads move consecutive 16-byte packs of one chunk's state.
template <typename T, int kVec, typename Index>
__global__ void chunk_scan_kernel(T* __restrict__ out, const T* __restrict__ in, Index heads,
                                  Index chunks, Index inner_packs, Index total, PerHead decay,
                                  bool reverse) {
  using Acc = acc_t<T>;
  using P = Pack<T, kVec>;
  const P* src = reinterpret_cast<const P*>(in);
  P* dst = reinterpret_cast<P*>(out);
  DSSM_GRID_LOOP(Index, i, total) {
    const Index bh = i / inner_packs, e = i % inner_packs;
    const Acc a = static_cast<Acc>(decay.value[bh % heads]);
    const Index base = bh * chunks * inner_packs + e;
    Acc acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[v] = Acc(0);
#pragma unroll 4
    for (Index step = 0; step < chunks; ++step) {
      const Index at = base + (reverse ? chunks - 1 - step : step) * inner_packs;
      const P u = src[at];
      P p;
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        p.v[v] = from_compute<T>(acc[v]);
        acc[v] = a * acc[v] + to_compute(u.v[v]);
      }
      dst[at] = p;
    }
  }
}

// In place on scores [batch*heads*chunks, C, C]: row i of chunk j of head h times
// row_scale[h, j C + i] * powers[h, i - i'] for i' <= i, zero above the diagonal. Packs wholly
// above the diagonal are written without being read.
template <typename T, int kVec, typename Index>
__global__ void chunk_mask_kernel(T* scores, const acc_t<T>* __restrict__ row_scale,
                                  const acc_t<T>* __restrict__ powers, Index heads, Index chunks,
                                  Index C, Index total) {
  using Acc = acc_t<T>;
  using P = Pack<T, kVec>;
  P* data = reinterpret_cast<P*>(scores);
  const Index packs_per_row = C / kVec;
  DSSM_GRID_LOOP(Index, p, total) {
    const Index row = p / packs_per_row, first = (p % packs_per_row) * kVec;
    const Index i = row % C, chunk_row = row / C;
    P x;
    if (first > i) {
#pragma unroll
      for (int v = 0; v < kVec; ++v) x.v[v] = from_compute<T>(Acc(0));
    } else {
      const Index j = chunk_row % chunks, h = chunk_row / chunks % heads;
      const Acc r = row_scale[(h * chunks + j) * C + i];
      const Acc* power = powers + h * C;
      x = data[p];
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        const Index col = first + v;
        x.v[v] = from_compute<T>(col <= i ? to_compute(x.v[v]) * r * power[i - col] : Acc(0));
      }
    }
    data[p] = x;
  }
}

// out[b, h, n, :] = add[b, h, n, :] + x[b, h, n, :] * table[h, n % period] over rows of d
// elements (add optional; out may be add or x).
template <typename T, int kVec, typename Index>
__global__ void scale_rows_kernel(T* out, const T* x, const T* add,
                                  const acc_t<T>* __restrict__ table, Index heads,
                                  Index rows_per_head, Index period, Index packs_per_row,
                                  Index total) {
  using Acc = acc_t<T>;
  using P = Pack<T, kVec>;
  DSSM_GRID_LOOP(Index, p, total) {
    const Index row = p / packs_per_row;
    const Index n = row % rows_per_head, h = row / rows_per_head % heads;
    const Acc s = table[h * period + n % period];
    const P xv = reinterpret_cast<const P*>(x)[p];
    P result;
    if (add != nullptr) {
      const P av = reinterpret_cast<const P*>(add)[p];
#pragma unroll
      for (int v = 0; v < kVec; ++v)
        result.v[v] = from_compute<T>(to_compute(av.v[v]) + to_compute(xv.v[v]) * s);
    } else {
#pragma unroll
      for (int v = 0; v < kVec; ++v) result.v[v] = from_compute<T>(to_compute(xv.v[v]) * s);
    }
    reinterpret_cast<P*>(out)[p] = result;
  }
}

// Launches kernel<T, kVec, Index> with kVec = 16 bytes when `vectorise` (else 1) and 32-bit
// indices when the element count allows: body(kernel_tag) gets the chosen constants.
template <typename T, typename Body>
void launch_packed(bool vectorise, int64_t elements, Body&& body) {
  constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  const bool small = elements < (int64_t{1} << 30);
  auto go = [&]<int kVec>() {
    if (small) {
      body.template operator()<kVec, int32_t>();
    } else {
      body.template operator()<kVec, int64_t>();
    }
  };
  if (vectorise) {
    go.template operator()<kWide>();
  } else {
    go.template operator()<1>();
  }
}

// new_state[d, e] = gamma state[d, e] + k[d] v[e];  out[e] = scale * sum_d q[d] new_state[d, e].
// One thread per (batch*head, e): consecutive threads read consecutive state entries.
template <typename T>
__global__ void step_kernel(T* out, T* new_state, const T* q, const T* k, const T* v,
                            const T* state, int64_t heads, int64_t dk, int64_t dv, int64_t total,
                            PerHead gamma, PerHead scale) {
  using Acc = decltype(to_compute(q[0]));
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t bh = i / dv, e = i % dv;
    const Acc g = static_cast<Acc>(gamma.value[bh % heads]);
    const Acc ve = to_compute(v[i]);
    Acc acc = 0;
    for (int64_t d = 0; d < dk; ++d) {
      const int64_t at = (bh * dk + d) * dv + e;
      const Acc s = g * to_compute(state[at]) + to_compute(k[bh * dk + d]) * ve;
      new_state[at] = from_compute<T>(s);
      acc += to_compute(q[bh * dk + d]) * s;
    }
    out[i] = from_compute<T>(static_cast<Acc>(scale.value[bh % heads]) * acc);
  }
}

}  // namespace

void retention_decay_mask(const Tensor& mask, const std::vector<double>& gammas, bool normalize) {
  check_dense("retention_decay_mask", mask);
  require_device(mask.device().index);
  const int64_t total = mask.numel();
  if (total == 0) return;
  std::vector<double> log_gammas;
  for (double g : gammas) log_gammas.push_back(std::log(g));
  const PerHead log_gamma = per_head(log_gammas, "retention_decay_mask");
  const PerHead gamma = per_head(gammas, "retention_decay_mask");
  dispatch_floating(mask.dtype(), "retention_decay_mask", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    decay_mask_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(mask), mask.size(1), total, log_gamma, gamma, normalize);
    DSSM_CUDA_CHECK_LAUNCH("retention_decay_mask");
  });
}

void retention_chunk_scan(const Tensor& out, const Tensor& in, const std::vector<double>& decay,
                          bool reverse) {
  check_dense("retention_chunk_scan", out), check_dense("retention_chunk_scan", in);
  require_device(in.device().index);
  const int64_t heads = in.size(1), chunks = in.size(2),
                inner = in.numel() / std::max<int64_t>(in.size(0) * heads * chunks, 1);
  if (in.numel() == 0 || chunks == 0) return;
  const PerHead per_head_decay = per_head(decay, "retention_chunk_scan");
  dispatch_floating(in.dtype(), "retention_chunk_scan", [&]<typename S>() {
    using T = device_t<S>;
    constexpr int kWide = 16 / static_cast<int>(sizeof(T));
    const bool vectorise =
        inner % kWide == 0 && aligned16(out.raw_data()) && aligned16(in.raw_data());
    launch_packed<T>(vectorise, in.numel(), [&]<int kVec, typename Index>() {
      const int64_t total = in.size(0) * heads * (inner / kVec);
      const LaunchConfig launch = elementwise_launch(total);
      chunk_scan_kernel<T, kVec, Index><<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<S>(out), device_data<S>(in), static_cast<Index>(heads),
          static_cast<Index>(chunks), static_cast<Index>(inner / kVec), static_cast<Index>(total),
          per_head_decay, reverse);
    });
    DSSM_CUDA_CHECK_LAUNCH("retention_chunk_scan");
  });
}

void retention_chunk_mask(const Tensor& scores, const Tensor& row_scale, const Tensor& powers,
                          int64_t heads, int64_t chunks) {
  check_dense("retention_chunk_mask", scores), check_dense("retention_chunk_mask", row_scale),
      check_dense("retention_chunk_mask", powers);
  require_device(scores.device().index);
  const int64_t C = scores.size(-1);
  if (!(scores.size(-2) == C && row_scale.numel() == heads * chunks * C &&
        powers.numel() == heads * C &&
        row_scale.dtype() == (scores.dtype() == DType::f64 ? DType::f64 : DType::f32) &&
        powers.dtype() == row_scale.dtype()))
    fail("retention_chunk_mask",
         "expected scores [..., C, C] and tables of [{}, {}] and [{}, {}] "
         "in the compute dtype, got {}, {}, {}",
         heads, chunks * C, heads, C, describe(scores), describe(row_scale), describe(powers));
  if (scores.numel() == 0) return;
  dispatch_floating(scores.dtype(), "retention_chunk_mask", [&]<typename S>() {
    using T = device_t<S>;
    using Acc = acc_t<T>;
    constexpr int kWide = 16 / static_cast<int>(sizeof(T));
    const bool vectorise = C % kWide == 0 && aligned16(scores.raw_data());
    launch_packed<T>(vectorise, scores.numel(), [&]<int kVec, typename Index>() {
      const int64_t total = scores.numel() / kVec;
      const LaunchConfig launch = elementwise_launch(total);
      chunk_mask_kernel<T, kVec, Index><<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<S>(scores), static_cast<const Acc*>(row_scale.raw_data()),
          static_cast<const Acc*>(powers.raw_data()), static_cast<Index>(heads),
          static_cast<Index>(chunks), static_cast<Index>(C), static_cast<Index>(total));
    });
    DSSM_CUDA_CHECK_LAUNCH("retention_chunk_mask");
  });
}

void retention_scale_rows(const Tensor& out, const Tensor& x, const Tensor& add,
                          const Tensor& table, int64_t period) {
  check_dense("retention_scale_rows", out), check_dense("retention_scale_rows", x),
      check_dense("retention_scale_rows", table);
  if (add.defined()) check_dense("retention_scale_rows", add);
  require_device(x.device().index);
  if (!(x.dim() == 4 && out.shape() == x.shape() && (!add.defined() || add.shape() == x.shape()) &&
        table.numel() == x.size(1) * period &&
        table.dtype() == (x.dtype() == DType::f64 ? DType::f64 : DType::f32)))
    fail("retention_scale_rows",
         "expected x, out (and add) [batch, heads, rows, d] and a table [heads, {}] in the compute "
         "dtype, got {}, {}, {}",
         period, describe(x), describe(out), describe(table));
  if (x.numel() == 0) return;
  const int64_t heads = x.size(1), rows = x.size(2), d = x.size(3);
  dispatch_floating(x.dtype(), "retention_scale_rows", [&]<typename S>() {
    using T = device_t<S>;
    using Acc = acc_t<T>;
    constexpr int kWide = 16 / static_cast<int>(sizeof(T));
    const bool vectorise = d % kWide == 0 && aligned16(out.raw_data()) && aligned16(x.raw_data()) &&
                           (!add.defined() || aligned16(add.raw_data()));
    launch_packed<T>(vectorise, x.numel(), [&]<int kVec, typename Index>() {
      const int64_t total = x.numel() / kVec;
      const LaunchConfig launch = elementwise_launch(total);
      scale_rows_kernel<T, kVec, Index><<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<S>(out), device_data<S>(x), add.defined() ? device_data<S>(add) : nullptr,
          static_cast<const Acc*>(table.raw_data()), static_cast<Index>(heads),
          static_cast<Index>(rows), static_cast<Index>(period), static_cast<Index>(d / kVec),
          static_cast<Index>(total));
    });
    DSSM_CUDA_CHECK_LAUNCH("retention_scale_rows");
  });
}

void retention_step(const Tensor& out, const Tensor& new_state, const Tensor& q, const Tensor& k,
                    const Tensor& v, const Tensor& state, const std::vector<double>& gammas,
                    const std::vector<double>& scales) {
  for (const Tensor* t : {&out, &new_state, &q, &k, &v, &state}) check_dense("retention_step", *t);
  require_device(q.device().index);
  const int64_t heads = q.size(1), dk = q.size(2), dv = v.size(2);
  const int64_t total = v.numel();
  if (total == 0) return;
  const PerHead gamma = per_head(gammas, "retention_step");
  const PerHead scale = per_head(scales, "retention_step");
  dispatch_floating(q.dtype(), "retention_step", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    step_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(new_state), device_data<T>(q), device_data<T>(k),
        device_data<T>(v), device_data<T>(state), heads, dk, dv, total, gamma, scale);
    DSSM_CUDA_CHECK_LAUNCH("retention_step");
  });
}

}  // namespace dssm::cuda
