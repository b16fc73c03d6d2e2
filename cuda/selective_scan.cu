// CUDA backward of the selective scan and its one-token step (the forward is in
// cuda/selective_scan_forward.cu; ops/selective_scan.cpp has the math and the CPU kernels):
//   h_t = a_t h_{t-1} + b_t,  a_t = exp(dt_t A[c, n]),  b_t = dt_t B_t[n] u_t,
//   y_t = sum_n C_t[n] h_t[n] + D u_t,   out_t = y_t silu(z_t).
//
// Chunked scan. A block of 4 warps owns one batch b and 32 consecutive channels; a warp holds 8
// channels x 4 "time lanes", and each time lane holds kItems = 8 consecutive time steps, so a warp
// walks the sequence in chunks of 32 steps, all 8 channels at once. Per chunk and state n, each
// lane composes its 8 steps serially (registers, f32 for bf16), the 4 time lanes of a channel
// combine their (a, b) pairs with a shuffle scan of the associative operator (a1, b1) o (a2, b2)
// = (a1 a2, a2 b1 + b2), and the state entering the chunk is applied. The block's operands of a
// chunk (B, C and the 32 channels' u, delta, grad_y, z) are copied to shared memory with 16-byte
// cp.async one chunk ahead (double buffered), so the global loads overlap the previous chunk's
// arithmetic; the gradients are stored as 16-byte vectors. A launch may run several scans of one
// shape side by side (DenseMamba's cross-layer read-outs, ops/cross_layer_readout.hpp): a grid row
// per scan, each block reading its scan's operands from a table.
//
// Backward (G_t = dL/dh_t; G_t = C_t gy_t + a_{t+1} G_{t+1}, docs/ops-ssm.md) needs the state
// entering every chunk ([chunks, N, rows], f32; 64 MB at batch 8, 2048 channels, length 2048):
// the forward stores them when asked to (when gradients will be needed), otherwise the forward
// kernel is run first to store only them. The kernel walks the chunks last to first, recomputes
// the chunk's states from its entry state (the forward scan above) and runs the reverse scan of
// Q_t = a_t G_t = a_t (C_t gy_t + Q_{t+1}) with pairs (a_t, a_t C_t gy_t) over the time lanes.
// du, ddelta, dz are per-lane sums over n; dA, dD, ddelta_bias are per-lane sums over time, added
// once per (b, c) at the end. dB and dC (sums over channels) are reduced over the 8 channels of a
// warp with a shuffle reduce-scatter, over the 4 warps of the block in shared memory, and added to
// global memory with one coalesced atomic per (block, n, t): 32 channels per atomic.
//
// The one-token step keeps the simple layout: a half warp per (batch, channel), lane n holding
// state n, sums over n by shuffles.
#include "cuda/selective_scan_common.cuh"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

constexpr int kItems = 8;                                     // time steps per lane
constexpr int kTimeLanes = 4;                                 // lanes per channel along time
constexpr int kChannelsPerWarp = 32 / kTimeLanes;             // 8
constexpr int kWarps = kThreads / 32;                         // per block
constexpr int kChannelsPerBlock = kChannelsPerWarp * kWarps;  // 32
static_assert(kTimeLanes * kItems == kChunkLen, "a warp walks one chunk at a time");
// Backward holds ~190 registers unbounded. At 128 (4 blocks of 128 threads per SM; ~76 bytes of
// spills) it ran 1.25x faster on the H100 than at 2 blocks per SM, and on the H200 1.08x faster
// than at 168 (3 blocks) at batch 8, where the grid fills 4 blocks per SM. A grid that fits in 3
// blocks per SM (batch 4 in Mamba-360M's shapes: 256 blocks on 132 SMs) loses nothing by the 168
// registers and ran 1.15x faster with them. The launch picks one of the two.
constexpr int kBlocksPerSMWide = 4, kBlocksPerSMNarrow = 3;
static_assert(kTimeLanes == 4 && kChannelsPerWarp == 8,
              "stage_channel_sums reduces over lane bits 2..4 (8 channels of 4 time lanes)");

// ---- chunked-scan layout ------------------------------------------------------------------------

// This thread's channel row and time lane.
struct RowLane {
  int64_t b, c, row;  // row = b * channels + c
  int lane, warp, tl;
  bool valid;  // c < channels (the last block of a batch may be partly empty)
};

template <typename T>
__device__ RowLane row_lane(const ScanArgs<T>& a) {
  const int64_t groups = (a.channels + kChannelsPerBlock - 1) / kChannelsPerBlock;
  RowLane r;
  r.lane = static_cast<int>(threadIdx.x % 32);
  r.warp = static_cast<int>(threadIdx.x / 32);
  r.tl = r.lane % kTimeLanes;
  r.b = blockIdx.x / groups;
  r.c = (blockIdx.x % groups) * kChannelsPerBlock + r.warp * kChannelsPerWarp + r.lane / kTimeLanes;
  r.valid = r.c < a.channels;
  r.row = r.b * a.channels + r.c;
  return r;
}

// kItems values of a staged row, from this lane's first step on, in the compute type.
template <typename T, typename C>
__device__ __forceinline__ void staged_items(const T* row, int tl, C (&out)[kItems]) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
#pragma unroll
  for (int v = 0; v < kItems / kPerVec; ++v) {
    const uint4 raw = reinterpret_cast<const uint4*>(row + tl * kItems)[v];
    T e[kPerVec];
    memcpy(e, &raw, sizeof(raw));
#pragma unroll
    for (int j = 0; j < kPerVec; ++j) out[v * kPerVec + j] = to_compute(e[j]);
  }
}

// The per-step inputs of one lane's items: u, delta + bias, dt (0 past L: the step is then the
// identity, a = 1, b = 0) and the sum of dt over the items.
template <typename C>
struct Items {
  C u[kItems], pre[kItems], dt[kItems], dtu[kItems];  // dtu = dt u
  C dt_sum;
};

// From a staged chunk whose arrays 0 and 1 are u and delta.
template <typename T, typename C>
__device__ __forceinline__ void chunk_items(const T* staged, const ScanArgs<T>& a, const RowLane& r,
                                            int64_t t, C bias, Items<C>& x) {
  const int64_t j = 2 * a.N + r.warp * kChannelsPerWarp + r.lane / kTimeLanes;
  staged_items(staged + j * kChunkLen, r.tl, x.u);
  staged_items(staged + (j + kChannelsPerBlock) * kChunkLen, r.tl, x.pre);
  x.dt_sum = C(0);
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    x.pre[k] += bias;
    const C dt = a.softplus ? softplus_fast(x.pre[k]) : x.pre[k];
    x.dt[k] = r.valid && t + k < a.length ? dt : C(0);
    x.dtu[k] = x.dt[k] * x.u[k];
    x.dt_sum += x.dt[k];
  }
}

// The staged row of per-channel array `i` for this thread's channel.
template <typename T>
__device__ __forceinline__ const T* channel_row(const T* staged, int64_t N, const RowLane& r,
                                                int i) {
  return staged +
         (2 * N + i * kChannelsPerBlock + r.warp * kChannelsPerWarp + r.lane / kTimeLanes) *
             kChunkLen;
}

// Inclusive scan in time order over the kTimeLanes lanes of a channel: (a, h) becomes the
// composition of the pairs of this lane and all earlier lanes of the chunk.
template <typename C>
__device__ __forceinline__ void scan_lanes_forward(C& a, C& h, int tl) {
#pragma unroll
  for (int d = 1; d < kTimeLanes; d *= 2) {
    const C a_up = __shfl_up_sync(kFullMask, a, d, kTimeLanes);
    const C h_up = __shfl_up_sync(kFullMask, h, d, kTimeLanes);
    if (tl >= d) {
      h = fma(a, h_up, h);
      a *= a_up;
    }
  }
}
// After scan_lanes_forward: the state entering this lane's first item, given h0 entering the
// chunk.
template <typename C>
__device__ __forceinline__ C lane_entry_forward(C a_incl, C h_incl, C h0, int tl) {
  const C a_up = __shfl_up_sync(kFullMask, a_incl, 1, kTimeLanes);
  const C h_up = __shfl_up_sync(kFullMask, h_incl, 1, kTimeLanes);
  return tl == 0 ? h0 : fma(a_up, h0, h_up);
}
// The same three in reverse time order, for Q_t = a_t (x_t + Q_{t+1}): (a, q) of a lane is the
// product of its a_t and its Q at the first item given Q = 0 after its last item.
template <typename C>
__device__ __forceinline__ void scan_lanes_reverse(C& a, C& q, int tl) {
#pragma unroll
  for (int d = 1; d < kTimeLanes; d *= 2) {
    const C a_down = __shfl_down_sync(kFullMask, a, d, kTimeLanes);
    const C q_down = __shfl_down_sync(kFullMask, q, d, kTimeLanes);
    if (tl + d < kTimeLanes) {
      q = fma(a, q_down, q);
      a *= a_down;
    }
  }
}
// The Q entering this lane from the right (Q after its last item), given q0 after the chunk.
template <typename C>
__device__ __forceinline__ C lane_entry_reverse(C a_incl, C q_incl, C q0, int tl) {
  const C a_down = __shfl_down_sync(kFullMask, a_incl, 1, kTimeLanes);
  const C q_down = __shfl_down_sync(kFullMask, q_incl, 1, kTimeLanes);
  return tl == kTimeLanes - 1 ? q0 : fma(a_down, q0, q_down);
}
// Q at the chunk's first step (lane 0's), in every lane: what the previous chunk receives.
template <typename C>
__device__ __forceinline__ C chunk_exit_reverse(C a_incl, C q_incl, C q0) {
  return __shfl_sync(kFullMask, fma(a_incl, q0, q_incl), 0, kTimeLanes);
}

// One state n of a lane's items: a_k = exp(dt_k A), b_k = dt_k B_k u_k, the lane's serial
// composition (from h = 0) and the product of its a_k (exp(A sum dt)).
template <typename C>
struct LaneSteps {
  C a[kItems], b[kItems];
  C a_all, h_all;
};

template <typename C>
__device__ __forceinline__ void lane_steps(const Items<C>& x, const C (&B)[kItems], C A2,
                                           LaneSteps<C>& s) {
  s.h_all = C(0);
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    s.a[k] = exp2_fast(x.dt[k] * A2);
    s.b[k] = x.dtu[k] * B[k];
    s.h_all = fma(s.a[k], s.h_all, s.b[k]);
  }
  s.a_all = exp2_fast(x.dt_sum * A2);
}

template <typename T, typename C>
struct BackwardOut {
  T *du, *ddelta, *dz;
  C *dA, *dB, *dC, *dD, *dbias;
  C* entry;  // [chunks, N, rows] states entering each chunk (from the forward, or scratch)
};

// Sums dB_k and dC_k of one state n over the 8 channels of the warp (a reduce-scatter over lane
// bits 4, 3, 2: each step keeps half of the values and adds the partner's half) and writes the
// two sums this lane ends with into the warp's staging area [2][N][kChunkLen] (dB, then dC).
template <typename C>
__device__ __forceinline__ void stage_channel_sums(const C (&dB)[kItems], const C (&dC)[kItems],
                                                   C* staged, int64_t n, int64_t N, int lane,
                                                   int tl) {
  C w8[8], w4[4], w2[2];
  bool hi = lane & 16;  // keeps dC, sends dB
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const C send = hi ? dB[i] : dC[i], keep = hi ? dC[i] : dB[i];
    w8[i] = keep + __shfl_xor_sync(kFullMask, send, 16);
  }
  hi = lane & 8;  // keeps items 4..7
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const C send = hi ? w8[i] : w8[i + 4], keep = hi ? w8[i + 4] : w8[i];
    w4[i] = keep + __shfl_xor_sync(kFullMask, send, 8);
  }
  hi = lane & 4;  // keeps items 2..3 of those
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const C send = hi ? w4[i] : w4[i + 2], keep = hi ? w4[i + 2] : w4[i];
    w2[i] = keep + __shfl_xor_sync(kFullMask, send, 4);
  }
  const int kind = (lane >> 4) & 1, k0 = ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2;
  C* dst = staged + (kind * N + n) * kChunkLen + tl * kItems + k0;
  dst[0] = w2[0];
  dst[1] = w2[1];
}

// The sum of v over the four time lanes of a channel, in each of them.
template <typename C>
__device__ __forceinline__ C time_lanes_sum(C v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// One scan of a backward launch (blockIdx.y picks it, as in the forward); grad_last may be null.
template <typename T, typename C>
struct BackwardJob {
  ScanArgs<T> a;
  const T* grad_y;
  const C* grad_last;
  BackwardOut<T, C> o;
};
template <typename T, typename C>
struct BackwardJobs {
  BackwardJob<T, C> job[kMaxScanJobs];
};

// Backward: every gradient (see the file comment), from the entry states in o.entry. Shared
// memory, in C: the carried Q [N][kThreads], the channels' dA sums [N][32], the dB/dC staging
// area [kWarps][2][N][kChunkLen], two entry-state buffers [N][32]; then two stage buffers in T.
template <typename T, typename C>
__device__ __forceinline__ void scan_backward_body(const ScanArgs<T>& a, const T* grad_y,
                                                   const C* grad_last, const BackwardOut<T, C>& o,
                                                   bool vec) {
  extern __shared__ __align__(16) unsigned char smem[];
  const RowLane r = row_lane(a);
  const int64_t L = a.length, N = a.N, rows = a.batch * a.channels;
  const int64_t chunks = (L + kChunkLen - 1) / kChunkLen, staged_len = 2 * N * kChunkLen;
  const int64_t c0 = r.c - r.warp * kChannelsPerWarp - r.lane / kTimeLanes;
  const int channel = r.warp * kChannelsPerWarp + r.lane / kTimeLanes;  // within the block
  const ChannelArrays<T> arrays{a.u, a.delta, grad_y, a.z, a.z ? 4 : 3};
  const int64_t stage_len = stage_rows<kChannelsPerBlock>(N, arrays.count) * kChunkLen;
  C* carry = reinterpret_cast<C*>(smem);
  C* dA_sum = carry + N * kThreads;
  C* sums = dA_sum + N * kChannelsPerBlock;
  C* my_sums = sums + r.warp * staged_len;
  C* entry_buf = sums + kWarps * staged_len;
  T* stage = reinterpret_cast<T*>(entry_buf + 2 * N * kChannelsPerBlock);
  const C D = r.valid && a.D ? to_compute(a.D[r.c]) : C(0);
  const C bias = r.valid && a.bias ? to_compute(a.bias[r.c]) : C(0);
  const int64_t off = r.row * L;

  // Chunks last to first, carrying Q.
  for (int64_t n = 0; n < N; ++n) {
    carry[n * kThreads + threadIdx.x] = r.valid && grad_last ? grad_last[r.row * N + n] : C(0);
  }
  for (int64_t i = threadIdx.x; i < N * kChannelsPerBlock; i += kThreads) dA_sum[i] = C(0);
  auto stage2 = [&](int64_t k) {
    stage_chunk<kChannelsPerBlock, T, C>(stage + (k % 2) * stage_len, a, arrays, r.b, c0,
                                         k * kChunkLen, vec, o.entry + k * N * rows,
                                         entry_buf + (k % 2) * N * kChannelsPerBlock);
  };
  C dD = 0, dbias = 0;
  if (chunks > 0) stage2(chunks - 1);
  for (int64_t k = chunks - 1; k >= 0; --k) {
    if (k > 0) {
      stage2(k - 1);
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const T* staged = stage + (k % 2) * stage_len;
    const C* entry = entry_buf + (k % 2) * N * kChannelsPerBlock;
    const int64_t t0 = k * kChunkLen, t = t0 + r.tl * kItems;
    Items<C> x;
    chunk_items(staged, a, r, t, bias, x);
    C gy[kItems], dz_coef[kItems], y[kItems], ddt[kItems], du[kItems];
    staged_items(channel_row(staged, N, r, 2), r.tl, gy);
    if (a.z) {
      C z[kItems];
      staged_items(channel_row(staged, N, r, 3), r.tl, z);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        // silu'(z) = s (1 + z (1 - s)), s = sigmoid(z)
        const C sig = sigmoid_fast(z[i]);
        dz_coef[i] = gy[i] * sig * fma(z[i], C(1) - sig, C(1));
        gy[i] *= z[i] * sig;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) dz_coef[i] = C(0);
    }
    C gB[kItems];  // sum over n of G_t[n] B_t[n]
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      y[i] = D * x.u[i];
      du[i] = D * gy[i];
      ddt[i] = C(0);
      gB[i] = C(0);
      dD = fma(gy[i], x.u[i], dD);
    }
#pragma unroll 1
    for (int n = 0; n < N; ++n) {
      const C A_n = r.valid ? to_compute(a.A[r.c * N + n]) : C(0), A2 = A_n * kLog2e<C>;
      C Bv[kItems], Cv[kItems];
      staged_items(staged + n * kChunkLen, r.tl, Bv);
      staged_items(staged + (N + n) * kChunkLen, r.tl, Cv);
      // The chunk's states h[i] = h_t, from the stored entry state.
      LaneSteps<C> s;
      lane_steps(x, Bv, A2, s);
      C a_incl = s.a_all, h_incl = s.h_all;
      scan_lanes_forward(a_incl, h_incl, r.tl);
      const C h_in =
          lane_entry_forward(a_incl, h_incl, entry[n * kChannelsPerBlock + channel], r.tl);
      C h[kItems], cg[kItems];
      {
        C state = h_in;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          state = fma(s.a[i], state, s.b[i]);
          h[i] = state;
          y[i] = fma(Cv[i], state, y[i]);
          cg[i] = Cv[i] * gy[i];
        }
      }
      // Reverse scan of Q_t = a_t (C_t gy_t + Q_{t+1}); G_t = C_t gy_t + Q_{t+1}.
      C q_all = C(0);
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) q_all = s.a[i] * (cg[i] + q_all);
      C a_rev = s.a_all;
      scan_lanes_reverse(a_rev, q_all, r.tl);
      C& slot = carry[n * kThreads + threadIdx.x];
      const C q0 = slot;
      C q = lane_entry_reverse(a_rev, q_all, q0, r.tl);
      slot = chunk_exit_reverse(a_rev, q_all, q0);
      // With P_t = G_t a_t h_{t-1}: dA += dt_t P_t, and ddt_t, du_t take their sums over n of
      // G_t B_t (gB, finished after the loop over n: ddt_t += u_t gB_t, du_t += dt_t gB_t).
      C dA = 0, dBv[kItems], dCv[kItems];
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) {
        const C G = cg[i] + q;
        q = s.a[i] * G;
        const C P = G * (s.a[i] * (i > 0 ? h[i - 1] : h_in));
        dA = fma(x.dt[i], P, dA);
        ddt[i] = fma(A_n, P, ddt[i]);
        gB[i] = fma(G, Bv[i], gB[i]);
        dBv[i] = G * x.dtu[i];
        dCv[i] = gy[i] * h[i];
      }
      dA = time_lanes_sum(dA);
      if (r.tl == 0) dA_sum[n * kChannelsPerBlock + channel] += dA;
      stage_channel_sums(dBv, dCv, my_sums, n, N, r.lane, r.tl);
    }
    if (a.z) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) dz_coef[i] *= y[i];
      store_items(o.dz + off, t, L, r.valid, vec, dz_coef);
    }
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      du[i] = fma(x.dt[i], gB[i], du[i]);
      ddt[i] = fma(x.u[i], gB[i], ddt[i]) * (a.softplus ? sigmoid_fast(x.pre[i]) : C(1));
      if (t + i < L) dbias += ddt[i];
    }
    store_items(o.du + off, t, L, r.valid, vec, du);
    store_items(o.ddelta + off, t, L, r.valid, vec, ddt);
    // dB, dC of this chunk: sum the four warps' staged values, one atomic per (n, t).
    __syncthreads();
    for (int64_t i = threadIdx.x; i < staged_len; i += kThreads) {
      const int64_t tt = t0 + i % kChunkLen;
      if (tt >= L) continue;
      C sum = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += sums[w * staged_len + i];
      const int64_t kind = i / (N * kChunkLen), n = (i / kChunkLen) % N;
      atomicAdd((kind ? o.dC : o.dB) + (r.b * N + n) * L + tt, sum);
    }
    __syncthreads();
  }
  // dA, dD, ddelta_bias: one atomic per (b, c).
  if (r.valid && r.tl == 0) {
    for (int64_t n = 0; n < N; ++n)
      atomicAdd(o.dA + r.c * N + n, dA_sum[n * kChannelsPerBlock + channel]);
  }
  dD = time_lanes_sum(dD);
  dbias = time_lanes_sum(dbias);
  if (r.valid && r.tl == 0 && o.dD) atomicAdd(o.dD + r.c, dD);
  if (r.valid && r.tl == 0 && o.dbias) atomicAdd(o.dbias + r.c, dbias);
}

// The kernels: one scan, or a table of them (blockIdx.y).
template <int kMinBlocks, typename T, typename C>
__global__ __launch_bounds__(kThreads,
                             kMinBlocks) void scan_backward_kernel(ScanArgs<T> a, const T* grad_y,
                                                                   const C* grad_last,
                                                                   BackwardOut<T, C> o, bool vec) {
  scan_backward_body(a, grad_y, grad_last, o, vec);
}
template <int kMinBlocks, typename T, typename C>
__global__ __launch_bounds__(kThreads, kMinBlocks) void scan_backward_jobs_kernel(
    const __grid_constant__ BackwardJobs<T, C> jobs, bool vec) {
  const BackwardJob<T, C>& job = jobs.job[blockIdx.y];
  scan_backward_body(job.a, job.grad_y, job.grad_last, job.o, vec);
}

// ---- one-token step -----------------------------------------------------------------------------

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

void selective_scan_backward(const std::vector<ScanBackwardJob>& jobs) {
  if (jobs.empty()) return;
  const ScanInputs& in0 = jobs[0].in;
  const unsigned blocks = row_blocks(in0, kChannelsPerBlock);
  if (blocks == 0) return;
  const int64_t N = in0.A.size(1);
  bool vec = true;
  std::vector<Tensor> entries;  // the forward's, or computed here by the forward kernel
  std::vector<ScanForwardJob> missing;
  for (const ScanBackwardJob& j : jobs) {
    vec = vec && vector_access(j.in, {j.grad_y, j.grads.du, j.grads.ddelta, j.grads.dz});
    entries.push_back(j.chunk_entry.defined() ? j.chunk_entry : selective_scan_chunk_entry(j.in));
    if (!j.chunk_entry.defined()) missing.push_back({j.in, Tensor(), Tensor(), entries.back()});
  }
  selective_scan_forward(missing);
  dispatch_floating(in0.u.dtype(), "selective_scan backward", [&]<typename S>() {
    using C = state_t<S>;
    const int64_t arrays = in0.z.defined() ? 4 : 3;
    const size_t smem =
        sizeof(C) * static_cast<size_t>(N * (kThreads + kChannelsPerBlock + 2 * kWarps * kChunkLen +
                                             2 * kChannelsPerBlock)) +
        2 * sizeof(S) * static_cast<size_t>((2 * N + arrays * kChannelsPerBlock) * kChunkLen);
    auto one_wide = scan_backward_kernel<kBlocksPerSMWide, device_t<S>, C>;
    auto many_wide = scan_backward_jobs_kernel<kBlocksPerSMWide, device_t<S>, C>;
    auto one_narrow = scan_backward_kernel<kBlocksPerSMNarrow, device_t<S>, C>;
    auto many_narrow = scan_backward_jobs_kernel<kBlocksPerSMNarrow, device_t<S>, C>;
    allow_shared_memory(one_wide, smem);
    allow_shared_memory(many_wide, smem);
    allow_shared_memory(one_narrow, smem);
    allow_shared_memory(many_narrow, smem);
    const int64_t narrow_grid = int64_t{kBlocksPerSMNarrow} * multiprocessor_count();
    in_groups(jobs, [&](size_t first, size_t count) {
      BackwardJobs<device_t<S>, C> group{};
      for (size_t j = 0; j < count; ++j) {
        const ScanBackwardJob& job = jobs[first + j];
        const ScanGradients& g = job.grads;
        const BackwardOut<device_t<S>, C> out{device_data<S>(g.du),
                                              device_data<S>(g.ddelta),
                                              g.dz.defined() ? device_data<S>(g.dz) : nullptr,
                                              state_data<S>(g.dA),
                                              state_data<S>(g.dB),
                                              state_data<S>(g.dC),
                                              state_data<S>(g.dD),
                                              state_data<S>(g.ddelta_bias),
                                              state_data<S>(entries[first + j])};
        group.job[j] = {scan_args<S>(job.in), device_data<S>(job.grad_y),
                        state_data<S>(job.grad_last_state), out};
      }
      const bool narrow = static_cast<int64_t>(blocks) * static_cast<int64_t>(count) <= narrow_grid;
      if (count == 1) {
        const BackwardJob<device_t<S>, C>& j = group.job[0];
        (narrow ? one_narrow : one_wide)<<<blocks, kThreads, smem, current_stream()>>>(
            j.a, j.grad_y, j.grad_last, j.o, vec);
      } else {
        const dim3 grid(blocks, static_cast<unsigned>(count));
        (narrow ? many_narrow : many_wide)<<<grid, kThreads, smem, current_stream()>>>(group, vec);
      }
      DSSM_CUDA_CHECK_LAUNCH("scan_backward_kernel");
    });
  });
}

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
