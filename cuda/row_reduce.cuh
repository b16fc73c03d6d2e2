// Reductions over one row by a warp or a block, shared by the row kernels of the network ops
// (softmax, cross-entropy, norms): plain sums, and the (max, sum of exp) pair of an online
// softmax, which finds both in a single pass over the row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

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

}  // namespace dssm::cuda
