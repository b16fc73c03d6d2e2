// Reductions over one row by a warp or a block, shared by the row kernels of the network ops
// (softmax, cross-entropy, norms): plain sums, and the (max, sum of exp) pair of an online
// softmax, which finds both in a single pass over the row. Also the layout of the "row in
// registers" kernels: a team of threads (one warp, or a whole block) per row, each thread holding
// kPacks packs of 16 bytes of the row, so that x is read from memory once.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "cuda/common.cuh"

namespace dssm::cuda {

// exp, log and 1/sqrt in the compute type (the accurate versions, not the __ intrinsics).
__device__ __forceinline__ float exp_c(float x) {
  return expf(x);
}
__device__ __forceinline__ double exp_c(double x) {
  return ::exp(x);
}
__device__ __forceinline__ float log_c(float x) {
  return logf(x);
}
__device__ __forceinline__ double log_c(double x) {
  return ::log(x);
}
__device__ __forceinline__ float rsqrt_c(float x) {
  return rsqrtf(x);
}
__device__ __forceinline__ double rsqrt_c(double x) {
  return ::rsqrt(x);
}

// Threads per block for a kernel that gives one block to each row of `cols` elements.
inline unsigned row_block_threads(int64_t cols) {
  return cols <= 128 ? 32 : cols <= 1024 ? 128 : 256;
}

template <typename C>
__device__ __forceinline__ C warp_sum(C v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The sum over the whole block (blockDim.x a multiple of 32), returned to every thread.
template <typename C>
__device__ C block_sum(C v) {
  __shared__ C per_warp[32];
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) per_warp[threadIdx.x / 32] = v;
  __syncthreads();
  C total = 0;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) total += per_warp[w];
  __syncthreads();  // per_warp is free again for the next call
  return total;
}

// Online softmax state of a set of values: their maximum m and s = sum exp(x - m).
template <typename C>
struct MaxSum {
  C max = -std::numeric_limits<C>::infinity();
  C sum = 0;
};

template <typename C>
__device__ __forceinline__ MaxSum<C> add_value(MaxSum<C> s, C x) {
  if (x > s.max) {  // a new maximum rescales what was summed so far
    s.sum = s.sum * exp_c(s.max - x) + C(1);
    s.max = x;
  } else if (x != -std::numeric_limits<C>::infinity()) {
    s.sum += exp_c(x - s.max);
  }
  return s;
}

template <typename C>
__device__ __forceinline__ MaxSum<C> merge(MaxSum<C> a, MaxSum<C> b) {
  if (b.max > a.max) {
    const MaxSum<C> t = a;
    a = b, b = t;
  }
  if (b.max == -std::numeric_limits<C>::infinity()) return a;
  a.sum += b.sum * exp_c(b.max - a.max);
  return a;
}

template <typename C>
__device__ MaxSum<C> block_max_sum(MaxSum<C> s) {
  for (int offset = 16; offset > 0; offset /= 2) {
    MaxSum<C> other;
    other.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    other.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    s = merge(s, other);
  }
  __shared__ C max_per_warp[32], sum_per_warp[32];
  if (threadIdx.x % 32 == 0) {
    max_per_warp[threadIdx.x / 32] = s.max;
    sum_per_warp[threadIdx.x / 32] = s.sum;
  }
  __syncthreads();
  MaxSum<C> total;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) {
    MaxSum<C> part;
    part.max = max_per_warp[w], part.sum = sum_per_warp[w];
    total = merge(total, part);
  }
  __syncthreads();
  return total;
}

// ---- rows held in registers ---------------------------------------------------------------

// 16 bytes of elements, loaded and stored with one vector instruction.
template <typename D>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(D));
  D v[kSize];
};

// The largest number of compute values a thread keeps per row array (more spilled registers in
// the norm backward, which holds three such arrays), and the largest team.
constexpr int kMaxRegisterValues = 16;
constexpr int kMaxPacks = 4;
constexpr unsigned kMaxTeamThreads = 512;

// How a row kernel lays out its threads. A team handles one row (or norm segment) at a time:
// a warp (blockDim = (32, kWarpTeams), threadIdx.y the team) or the whole block (blockDim =
// (threads, 1)). Thread `lane` of a team of `size` threads holds the packs lane + i * size,
// i < packs_per_thread. `fits` is false when the row cannot be held so (rows not 16-byte aligned,
// or too long): the caller then uses its looped kernel.
struct RowPlan {
  bool fits = false;
  bool block_team = false;
  int packs_per_thread = 0;
  unsigned threads = 0;          // blockDim.x
  unsigned teams_per_block = 0;  // blockDim.y
};
constexpr unsigned kWarpTeams = 8;

inline bool aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;  // nullptr passes
  }
  return true;
}

// The plan for rows of `cols` elements of `elem_bytes` each, all `pointers` (null ones ignored)
// being the row arrays, each thread holding at most `max_values` compute values per array: a warp
// per row while the row fits in 32 lanes, else the smallest pack count that needs at most 256
// threads, else the largest that needs at most 512 (with 16 values: rows up to 8Ki f32 / bf16,
// 4Ki f64).
inline RowPlan plan_rows(int64_t cols, int elem_bytes, std::initializer_list<const void*> pointers,
                         int max_values = kMaxRegisterValues) {
  RowPlan plan;
  if (cols <= 0 || (cols * elem_bytes) % 16 != 0 || !aligned16(pointers)) return plan;
  const int64_t packs = cols * elem_bytes / 16;
  const int max_packs =
      std::min(kMaxPacks, std::max(1, std::min(kMaxRegisterValues, max_values) * elem_bytes / 16));
  for (int k = 1; k <= max_packs; k *= 2) {
    if (packs <= 32 * int64_t{k}) return {true, false, k, 32, kWarpTeams};
  }
  auto threads_for = [&](int k) { return ((packs + k - 1) / k + 31) & ~int64_t{31}; };
  for (int k = 1; k <= max_packs; k *= 2) {
    if (threads_for(k) <= 256) return {true, true, k, static_cast<unsigned>(threads_for(k)), 1};
  }
  if (threads_for(max_packs) <= kMaxTeamThreads) {
    return {true, true, max_packs, static_cast<unsigned>(threads_for(max_packs)), 1};
  }
  return plan;
}

// Calls f.template operator()<kBlockTeam, kPacks>() for the plan, kPacks * Pack<D>::kSize being
// at most kMaxRegisterValues.
template <typename D, typename F>
void dispatch_plan(const RowPlan& plan, F&& f) {
  constexpr int kVec = Pack<D>::kSize;
  auto with_team = [&]<bool kBlockTeam>() {
    auto with_packs = [&]<int kPacks>() {
      if constexpr (kPacks <= kMaxPacks && kPacks * kVec <= kMaxRegisterValues) {
        f.template operator()<kBlockTeam, kPacks>();
      }
    };
    switch (plan.packs_per_thread) {
      case 1:
        with_packs.template operator()<1>();
        break;
      case 2:
        with_packs.template operator()<2>();
        break;
      default:
        with_packs.template operator()<4>();
        break;
    }
  };
  if (plan.block_team) {
    with_team.template operator()<true>();
  } else {
    with_team.template operator()<false>();
  }
}

// The team of the calling thread under a RowPlan's launch, and the number of teams in the grid.
__device__ __forceinline__ int64_t team_index() {
  return int64_t{blockIdx.x} * blockDim.y + threadIdx.y;
}
__device__ __forceinline__ int64_t team_count() {
  return int64_t{gridDim.x} * blockDim.y;
}

// The sum / max over the calling thread's team, returned to every thread of the team.
template <bool kBlockTeam, typename C>
__device__ __forceinline__ C team_sum(C v) {
  if constexpr (kBlockTeam) {
    return block_sum(v);
  } else {
    return warp_sum(v);
  }
}

template <typename C>
__device__ __forceinline__ C warp_max(C v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

template <bool kBlockTeam, typename C>
__device__ C team_max(C v) {
  v = warp_max(v);
  if constexpr (kBlockTeam) {
    __shared__ C per_warp[32];
    if (threadIdx.x % 32 == 0) per_warp[threadIdx.x / 32] = v;
    __syncthreads();
    v = per_warp[0];
    for (unsigned w = 1; w < blockDim.x / 32; ++w) v = max(v, per_warp[w]);
    __syncthreads();
  }
  return v;
}

// Loads the calling thread's packs of `row` (packs of them in all) into v in the compute type;
// values past the row's end are `fill`. A null row gives `fill` everywhere.
template <int kPacks, typename D, typename C>
__device__ __forceinline__ void load_row(C (&v)[kPacks][Pack<D>::kSize], const D* row,
                                         int64_t packs, C fill) {
  Pack<D> raw[kPacks];
#pragma unroll
  for (int i = 0; i < kPacks; ++i) {
    const int64_t p = threadIdx.x + int64_t{i} * blockDim.x;
    if (row && p < packs) raw[i] = reinterpret_cast<const Pack<D>*>(row)[p];
  }
#pragma unroll
  for (int i = 0; i < kPacks; ++i) {
    const bool valid = row && threadIdx.x + int64_t{i} * blockDim.x < packs;
#pragma unroll
    for (int k = 0; k < Pack<D>::kSize; ++k) v[i][k] = valid ? C(to_compute(raw[i].v[k])) : fill;
  }
}

// Stores the calling thread's packs of v into `row` (packs of them in all).
template <int kPacks, typename D, typename C>
__device__ __forceinline__ void store_row(D* row, const C (&v)[kPacks][Pack<D>::kSize],
                                          int64_t packs) {
#pragma unroll
  for (int i = 0; i < kPacks; ++i) {
    const int64_t p = threadIdx.x + int64_t{i} * blockDim.x;
    if (p >= packs) continue;
    Pack<D> raw;
#pragma unroll
    for (int k = 0; k < Pack<D>::kSize; ++k) raw.v[k] = from_compute<D>(v[i][k]);
    reinterpret_cast<Pack<D>*>(row)[p] = raw;
  }
}

// Whether pack i of the calling thread lies inside a row of `packs` packs.
__device__ __forceinline__ bool pack_valid(int i, int64_t packs) {
  return threadIdx.x + int64_t{i} * blockDim.x < packs;
}

}  // namespace dssm::cuda
