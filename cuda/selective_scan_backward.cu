// CUDA backward of the selective scan (docs/ops-ssm.md derives it; ops/selective_scan.cpp has
// the CPU kernel). With G_t = dL/dh_t = C_t gy_t + a_{t+1} G_{t+1}, where gy_t = dL/dy_t before
// the gate, and P_t = G_t a_t h_{t-1}:
//   dA[c, n] = sum_t dt_t P_t[n]            ddt_t = sum_n (A[n] P_t[n] + G_t[n] B_t[n] u_t)
//   du_t     = sum_n G_t[n] B_t[n] dt_t + D gy_t       dB[b, n, t] = sum_c G_t[n] dt_t u_t
//   dC[b, n, t] = sum_c gy_t h_t[n]         dz_t = dL/dout_t silu'(z_t) y_t
//
// The layout of the forward (cuda/selective_scan_forward.cu): 4 lanes per (b, c) row,
// 4 states each, 32 rows of one batch per block, chunks of 32 steps staged in shared memory with
// cp.async one chunk ahead and converted once per block into f32 arrays. Chunks are visited last
// to first. A chunk's states are recomputed from the state entering it (stored by the forward):
// one pass over the chunk keeps the state entering each sub-chunk of kSub steps in registers;
// then, sub-chunk by sub-chunk backwards, the sub-chunk's a_t and h_t are recomputed into
// registers and walked in reverse, carrying Q_t = a_t G_t. Per step and state: nine f32
// instructions, no shuffles. The sums over a row's 16 states (ddt, the G B sum, the read-out y
// that dz needs) are added over the row's 4 lanes by a reduce-scatter that leaves each lane one
// step of the sub-chunk to finish (du, ddelta, dz, written to shared memory, then stored as
// 16-byte vectors per chunk). dB and dC are sums over the channels: each lane writes its 4 states'
// values of a step to shared memory, and after a barrier the block adds each (kind, step, n) over
// its 32 rows (add_exchange()) and adds it to global memory with one atomic. dA, dD and ddelta_bias
// are summed in registers over the sequence and added once per row. A scan read by deeper layers
// (ScanReader, DenseMamba) adds their C_t grad_t to G_t's C_t gy_t (reader_terms()): their C and
// gradients are staged and converted with the chunk, in a build with room for them.
#include "cuda/selective_scan_common.cuh"
#include "ops/elementwise.hpp"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

constexpr int kSub = 4;                  // steps per sub-chunk: a lane finishes one of them
constexpr int kSubs = kChunkLen / kSub;  // 8
static_assert(kSub == kGroups, "each lane of a row finishes one step of a sub-chunk");
static_assert(2 * kSub * kMaxStates == kThreads, "one (kind, step, n) sum per thread");

template <typename T, typename C>
struct BackwardOut {
  T *du, *ddelta, *dz;
  C *dA, *dB, *dC, *dD, *dbias;
  const C* entry;  // [chunks, N, rows] states entering each chunk
};

// One scan; grad_last may be null. readers: the deeper read-outs (ScanReader) whose C_t grad_t
// join the scan's own C_t gy_t in G_t; reader_slots: how many the launch made room for in shared
// memory (the same in every job of a launch).
template <typename T, typename C>
struct BackwardJob {
  ScanArgs<T> a;
  const T* grad_y;
  const C* grad_last;
  BackwardOut<T, C> o;
  const T* reader_C[kMaxReaders];     // [batch, N, length]
  const T* reader_grad[kMaxReaders];  // [batch, channels, length]
  int readers, reader_slots;
};

// The kernel comes in three builds. For grids of more than one wave of 3 blocks per SM (batch 8 of
// Mamba-360M's width: 512 blocks on 132 SMs), up to 128 registers and one dB/dC exchange area, so
// that 4 blocks of bf16 fit in an SM (55 KB of shared memory each) and the grid runs in one wave;
// one more barrier per sub-chunk. Smaller grids run ~2 blocks per SM either way: up to 168
// registers and two exchange areas used in turns, 5 % faster there (batch 4). Scans joined by
// deeper read-outs (DenseMamba) take the third: room for the readers' C and gradients, 2 blocks
// per SM (97 KB of shared memory each in bf16 with 4 readers) and one exchange area.
constexpr int kReadersBuild = 2;  // its kMinBlocks
constexpr int exchange_areas(int min_blocks) {
  return min_blocks == 3 ? 2 : 1;
}

// Shared memory of a block, in C: per (row, step) [kRows][kPad] dt, u (then du), gy (after the
// gate), the dz coefficient (then dz), softplus' (then ddelta); B, C [kChunkLen][16]; D, bias
// [kRows]; the entry states [16][kEntryStride]; the dB/dC exchange areas [areas][2 kinds][kSub]
// [kExchangeStride]; per reader slot its gradient [kRows][kPad] and C [kChunkLen][16]; then the
// staged chunk in T.
constexpr int kArrays = 5;
constexpr int64_t kReaderValues = kRows * kPad + kChunkLen * kMaxStates;
constexpr int64_t shared_values(int areas, int reader_slots) {
  return kArrays * kRows * kPad + 2 * kChunkLen * kMaxStates + 2 * kRows +
         kMaxStates * kEntryStride + areas * 2 * kSub * kExchangeStride +
         reader_slots * kReaderValues;
}

template <typename C>
struct BackwardArrays {
  C *dt, *u, *gy, *zc, *dsp;  // [kRows][kPad]
  C *B, *C_;                  // [kChunkLen][kMaxStates], zero past N
  C *D, *bias;                // [kRows]
  C* entry;                   // [kMaxStates][kEntryStride]
  C* sums;                    // [areas][2 kinds][kSub][kExchangeStride]
  C *reader_gy, *reader_C;    // [slots][kRows][kPad], [slots][kChunkLen][kMaxStates]
};

template <typename C>
__device__ BackwardArrays<C> carve(C* base, int areas, int reader_slots) {
  BackwardArrays<C> s;
  C* p = base;
  s.dt = p, p += kRows * kPad;
  s.u = p, p += kRows * kPad;
  s.gy = p, p += kRows * kPad;
  s.zc = p, p += kRows * kPad;
  s.dsp = p, p += kRows * kPad;
  s.B = p, p += kChunkLen * kMaxStates;
  s.C_ = p, p += kChunkLen * kMaxStates;
  s.D = p, p += kRows;
  s.bias = p, p += kRows;
  s.entry = p, p += kMaxStates * kEntryStride;
  s.sums = p, p += areas * 2 * kSub * kExchangeStride;
  s.reader_gy = p, p += reader_slots * kRows * kPad;
  s.reader_C = p;
  return s;
}

// The per-state and per-channel arrays a job stages (StagedArrays): B, C, the readers' C; u,
// delta, grad_y, z (when present), the readers' gradients (in the readers' build only).
template <bool kReaders, typename T, typename C>
__device__ StagedArrays<T> staged_arrays(const BackwardJob<T, C>& job) {
  const ScanArgs<T>& a = job.a;
  const int readers = kReaders ? job.readers : 0;
  StagedArrays<T> arrays{
      {a.B, a.C}, 2 + readers, {a.u, a.delta, job.grad_y, a.z}, (a.z ? 4 : 3) + readers};
  if constexpr (kReaders) {
#pragma unroll
    for (int r = 0; r < kMaxReaders; ++r) {  // constant indices: the arrays stay in registers
      arrays.state[2 + r] = job.reader_C[r];
      if (a.z) {
        arrays.channel[4 + r] = job.reader_grad[r];
      } else {
        arrays.channel[3 + r] = job.reader_grad[r];
      }
    }
  }
  return arrays;
}

// The readers' staged gradients and C into their f32 arrays (the rows and step of the thread as
// in convert_chunk; C transposed as B and C).
template <typename T, typename C>
__device__ void convert_readers(const T* staged, int N, int states, int first_channel, int readers,
                                const BackwardArrays<C>& s) {
  const int step = threadIdx.x % kChunkLen;
#pragma unroll 1
  for (int r = 0; r < readers; ++r) {
    const T* grad = staged_channel(staged, N, states, first_channel + r);
    C v[kConvertRows];
#pragma unroll
    for (int k = 0; k < kConvertRows; ++k)
      v[k] = to_compute(grad[convert_row(k) * kChunkLen + step]);
#pragma unroll
    for (int k = 0; k < kConvertRows; ++k) {
      s.reader_gy[(r * kRows + convert_row(k)) * kPad + step] = v[k];
    }
    transpose_state_array(staged_state(staged, N, 2 + r), N,
                          s.reader_C + r * kChunkLen * kMaxStates);
  }
}

// The staged chunk (B, C, then u, delta, grad_y, z of the block's rows) into the f32 arrays.
template <typename T, typename C>
__device__ void convert_chunk(const T* staged, const ScanArgs<T>& a, int states, int live_rows,
                              int64_t t0, const BackwardArrays<C>& s) {
  const int N = static_cast<int>(a.N);
  const T *u = staged_channel(staged, N, states, 0), *delta = staged_channel(staged, N, states, 1),
          *gy = staged_channel(staged, N, states, 2), *z = staged_channel(staged, N, states, 3);
  // Four of a thread's rows at a time, their loads before their stores (as the forward's
  // conversion; all eight rows at once spilled registers in the 4-blocks build).
  constexpr int kAtOnce = kConvertRows / 2;
  const int step = threadIdx.x % kChunkLen;
  const bool live_step = t0 + step < a.length;
#pragma unroll
  for (int k0 = 0; k0 < kConvertRows; k0 += kAtOnce) {
    C pre[kAtOnce], uv[kAtOnce], gv[kAtOnce], zv[kAtOnce];
#pragma unroll
    for (int k = 0; k < kAtOnce; ++k) {
      const int j = convert_row(k0 + k), i = j * kChunkLen + step;
      pre[k] = to_compute(delta[i]) + s.bias[j];
      uv[k] = to_compute(u[i]);
      gv[k] = to_compute(gy[i]);
      zv[k] = a.z ? to_compute(z[i]) : C(0);
    }
#pragma unroll
    for (int k = 0; k < kAtOnce; ++k) {
      const int j = convert_row(k0 + k), at = j * kPad + step;
      const bool live = live_step && j < live_rows;
      C dt = pre[k], dsp = C(1);
      if (a.softplus) softplus_and_sigmoid_fast(pre[k], dt, dsp);
      s.dt[at] = live ? dt : C(0);  // 0: an identity step
      s.dsp[at] = dsp;
      s.u[at] = uv[k];
      if (a.z) {  // out = y silu(z): dL/dy = g silu(z), dL/dz = g silu'(z) y
        const C sig = sigmoid_fast(zv[k]);
        s.gy[at] = gv[k] * zv[k] * sig;
        s.zc[at] = gv[k] * sig * fma(zv[k], C(1) - sig, C(1));
      } else {
        s.gy[at] = gv[k];
        s.zc[at] = C(0);
      }
    }
  }
  transpose_B_C(staged, N, s.B, s.C_);
}

// dt and dt u of the kSub steps of sub-chunk sc of row j (two 16-byte loads).
template <typename C>
__device__ __forceinline__ void load_sub_chunk(const BackwardArrays<C>& s, int j, int sc,
                                               C (&dt)[kSub], C (&dtu)[kSub]) {
  C u[kSub];
  load_shared(s.dt + j * kPad + sc * kSub, dt);
  load_shared(s.u + j * kPad + sc * kSub, u);
#pragma unroll
  for (int i = 0; i < kSub; ++i) dtu[i] = dt[i] * u[i];
}

// h_t = a_t h_{t-1} + dt_t u_t B_t for this lane's 4 states at step `step` of the chunk; returns
// a_t in `a`.
template <typename C>
__device__ __forceinline__ void step_states(const BackwardArrays<C>& s, int g, int step, C dt,
                                            C dtu, const C (&A2)[kStates], C (&h)[kStates],
                                            C (&a)[kStates]) {
  C Bv[kStates];
  load_shared(s.B + step * kMaxStates + g * kStates, Bv);
#pragma unroll
  for (int q = 0; q < kStates; ++q) {
    a[q] = exp2_fast(dt * A2[q]);
    h[q] = fma(a[q], h[q], dtu * Bv[q]);
  }
}

// Adds a sub-chunk's dB and dC over the block's 32 rows from the exchange area `sums` and adds the
// sums to dB[n, t], dC[n, t] (of the block's batch) in global memory: thread x adds (kind x / 64,
// step x / 16 % 4, n x % 16), one atomic each. (Four states a thread with 16-byte loads, and
// shuffles across the 4 lanes of a state quad, ran 2 % faster at batch 4 but 2 % slower at batch
// 8: docs/benchmarks.md.)
template <typename C>
__device__ __forceinline__ void add_exchange(const C* sums, int64_t t0, int64_t L, int64_t N, C* dB,
                                             C* dC) {
  const int x = static_cast<int>(threadIdx.x);
  const int kind = x / (kSub * kMaxStates), i = (x / kMaxStates) % kSub;
  const int n = x % kMaxStates;
  const C total = sum_exchange_rows(sums + (kind * kSub + i) * kExchangeStride, n);
  const int64_t t = t0 + i;
  if (n < N && t < L) atomicAdd((kind ? dC : dB) + n * L + t, total);
}

// The sum over the readers of C_t grad_t for this lane's 4 states at step `step` (G_t's terms
// from the deeper read-outs).
template <typename C>
__device__ __forceinline__ void reader_terms(const BackwardArrays<C>& s, int readers, int j, int g,
                                             int step, C (&terms)[kStates]) {
#pragma unroll
  for (int q = 0; q < kStates; ++q) terms[q] = C(0);
#pragma unroll
  for (int r = 0; r < kMaxReaders; ++r) {
    if (r < readers) {
      C Cv[kStates];
      load_shared(s.reader_C + (r * kChunkLen + step) * kMaxStates + g * kStates, Cv);
      const C grad = s.reader_gy[(r * kRows + j) * kPad + step];
#pragma unroll
      for (int q = 0; q < kStates; ++q) terms[q] = fma(Cv[q], grad, terms[q]);
    }
  }
}

template <int kAreas, bool kReaders, typename T, typename C>
__device__ __forceinline__ void scan_backward_body(const BackwardJob<T, C>& job, bool vec) {
  extern __shared__ __align__(16) unsigned char smem[];
  const ScanArgs<T>& a = job.a;
  const BackwardOut<T, C>& o = job.o;
  const int64_t L = a.length, N = a.N, rows = a.batch * a.channels;
  const int64_t chunks = (L + kChunkLen - 1) / kChunkLen;
  const BlockRows r = block_rows(a.channels);
  const int j = r.j, g = r.g;
  const int64_t b = r.b, c0 = r.c0, c = r.c, row = r.row;
  const bool valid = r.valid;

  const int slots = kReaders ? job.reader_slots : 0;
  const BackwardArrays<C> s = carve(reinterpret_cast<C*>(smem), kAreas, slots);
  T* stage = reinterpret_cast<T*>(reinterpret_cast<C*>(smem) + shared_values(kAreas, slots));
  const StagedArrays<T> arrays = staged_arrays<kReaders>(job);
  load_row_constants(a, c0, s.D, s.bias);
  C A2[kStates], Q[kStates], dA[kStates] = {};
  load_A2(a, r, A2);
#pragma unroll
  for (int q = 0; q < kStates; ++q) {  // Q = a_{t+1} G_{t+1} past the end
    const int n = g * kStates + q;
    Q[q] = valid && n < N && job.grad_last ? job.grad_last[row * N + n] : C(0);
  }
  C dD = C(0), dbias = C(0);
  const C D = valid && a.D ? to_compute(a.D[c]) : C(0);
  auto stage_k = [&](int64_t k) {
    stage_chunk<T, C>(stage, a, arrays, b, c0, k * kChunkLen, vec, o.entry + k * N * rows, s.entry);
  };
  if (chunks > 0) stage_k(chunks - 1);
  int area = 0;  // the dB/dC exchange area the next sub-chunk writes
  for (int64_t k = chunks - 1; k >= 0; --k) {
    const int64_t t0 = k * kChunkLen;
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk's copies have landed; the previous chunk's arrays are stored
    convert_chunk(stage, a, arrays.states, r.live_rows, t0, s);
    if constexpr (kReaders) {
      convert_readers(stage, static_cast<int>(N), arrays.states, a.z ? 4 : 3, job.readers, s);
    }
    C h[kStates], a_t[kStates];
#pragma unroll
    for (int q = 0; q < kStates; ++q) {
      const int n = g * kStates + q;
      h[q] = n < N ? s.entry[n * kEntryStride + j] : C(0);
    }
    __syncthreads();  // the arrays are written; the staged chunk and entry states are read
    if (k > 0) stage_k(k - 1);

    // The state entering each sub-chunk.
    C h_sub[kSubs][kStates];
#pragma unroll
    for (int sc = 0; sc < kSubs; ++sc) {
#pragma unroll
      for (int q = 0; q < kStates; ++q) h_sub[sc][q] = h[q];
      C dt[kSub], dtu[kSub];
      load_sub_chunk(s, j, sc, dt, dtu);
#pragma unroll
      for (int i = 0; i < kSub; ++i) step_states(s, g, sc * kSub + i, dt[i], dtu[i], A2, h, a_t);
    }

#pragma unroll
    for (int sc = kSubs - 1; sc >= 0; --sc) {
      // This sub-chunk's a_t and h_t, from the state entering it.
      C av[kSub][kStates], hv[kSub][kStates], dt[kSub], dtu[kSub], gy[kSub];
      load_sub_chunk(s, j, sc, dt, dtu);
      load_shared(s.gy + j * kPad + sc * kSub, gy);
#pragma unroll
      for (int q = 0; q < kStates; ++q) h[q] = h_sub[sc][q];
#pragma unroll
      for (int i = 0; i < kSub; ++i) {
        step_states(s, g, sc * kSub + i, dt[i], dtu[i], A2, h, av[i]);
#pragma unroll
        for (int q = 0; q < kStates; ++q) hv[i][q] = h[q];
      }
      // Reverse steps. parts[i][0..2]: this lane's sums over its states of A2 P, G B and C h.
      C parts[kSub * 3];
      C* sums = s.sums + area * 2 * kSub * kExchangeStride;
#pragma unroll
      for (int i = kSub - 1; i >= 0; --i) {
        const int step = sc * kSub + i;
        C Bv[kStates], Cv[kStates], dBv[kStates], dCv[kStates];
        load_shared(s.B + step * kMaxStates + g * kStates, Bv);
        load_shared(s.C_ + step * kMaxStates + g * kStates, Cv);
        C pd = C(0), pg = C(0), py = C(0), terms[kStates];
        if constexpr (kReaders) reader_terms(s, job.readers, j, g, step, terms);
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          C G = fma(Cv[q], gy[i], Q[q]);
          if constexpr (kReaders) G += terms[q];
          const C aG = av[i][q] * G;
          const C P = aG * (i > 0 ? hv[i - 1][q] : h_sub[sc][q]);
          Q[q] = aG;
          dA[q] = fma(dt[i], P, dA[q]);
          pd = fma(A2[q], P, pd);
          pg = fma(G, Bv[q], pg);
          py = fma(Cv[q], hv[i][q], py);
          dBv[q] = G * dtu[i];
          dCv[q] = gy[i] * hv[i][q];
        }
        parts[i * 3] = pd, parts[i * 3 + 1] = pg, parts[i * 3 + 2] = py;
        const int at = exchange_slot(j, g * kStates);
        store_shared(sums + i * kExchangeStride + at, dBv);
        store_shared(sums + (kSub + i) * kExchangeStride + at, dCv);
      }
      // Lane g finishes step sc * kSub + g of its row (in place: the row's other lanes have
      // read that step's u, dsp and zc, before the shuffles).
      sum_over_groups(parts, g);
      __syncwarp();
      {
        const int step = sc * kSub + g, at = j * kPad + step;
        const C dt = s.dt[at], u = s.u[at], gy = s.gy[at];
        const C gB = parts[1];
        const C ddelta = fma(u, gB, parts[0] * C(0.6931471805599453)) * s.dsp[at];  // A = A2 ln 2
        s.u[at] = fma(dt, gB, D * gy);                                              // du
        s.dsp[at] = ddelta;
        s.zc[at] *= parts[2] + D * u;  // dz = coefficient * y before the gate
        if (valid && t0 + step < L) {
          dD = fma(gy, u, dD);
          dbias += ddelta;
        }
      }
      __syncthreads();  // every lane's dB, dC of the sub-chunk are in `sums`
      add_exchange(sums, t0 + sc * kSub, L, N, o.dB + b * N * L, o.dC + b * N * L);
      if constexpr (kAreas == 1) {
        __syncthreads();  // `sums` is read: the next sub-chunk may write it
      } else {
        area ^= 1;  // the other area: its last readers passed the barrier above
      }
    }
    {  // du, ddelta, dz of the chunk, finished by the lanes of each row (one warp)
      C du[kOwnSteps], dd[kOwnSteps], dz[kOwnSteps];
      const int first = own_block(g) * kOwnSteps;
      load_shared(s.u + j * kPad + first, du);
      load_shared(s.dsp + j * kPad + first, dd);
      store_items(o.du + row * L, t0 + first, L, valid, vec, du);
      store_items(o.ddelta + row * L, t0 + first, L, valid, vec, dd);
      if (o.dz) {
        load_shared(s.zc + j * kPad + first, dz);
        store_items(o.dz + row * L, t0 + first, L, valid, vec, dz);
      }
    }
  }
  // dA once per (row, state); dD, ddelta_bias once per row.
#pragma unroll
  for (int q = 0; q < kStates; ++q) {
    const int n = g * kStates + q;
    if (valid && n < N) atomicAdd(o.dA + c * N + n, dA[q]);
  }
  C sums2[kGroups] = {dD, dbias, C(0), C(0)};
  sum_over_groups(sums2, g);  // lane 0 holds dD, lane 1 dbias
  if (valid && g == 0 && o.dD) atomicAdd(o.dD + c, sums2[0]);
  if (valid && g == 1 && o.dbias) atomicAdd(o.dbias + c, sums2[0]);
}

template <int kMinBlocks, typename T, typename C>
__global__ __launch_bounds__(kThreads,
                             kMinBlocks) void scan_backward_kernel(const BackwardJob<T, C> job,
                                                                   bool vec) {
  scan_backward_body<exchange_areas(kMinBlocks), kMinBlocks == kReadersBuild>(job, vec);
}
template <int kMinBlocks, typename T, typename C>
__global__ __launch_bounds__(kThreads, kMinBlocks) void scan_backward_jobs_kernel(
    const __grid_constant__ JobTable<BackwardJob<T, C>> table, bool vec) {
  scan_backward_body<exchange_areas(kMinBlocks), kMinBlocks == kReadersBuild>(table.job[blockIdx.y],
                                                                              vec);
}

// Shared memory of a block of the build for kMinBlocks blocks per SM, with room for `slots`
// readers.
template <int kMinBlocks, typename S>
size_t backward_smem(int64_t N, bool gated, int slots) {
  const int64_t staged = staged_elements<S>(N, 2 + slots, (gated ? 4 : 3) + slots);
  return sizeof(state_t<S>) *
             static_cast<size_t>(shared_values(exchange_areas(kMinBlocks), slots)) +
         sizeof(S) * static_cast<size_t>(staged);
}

template <int kMinBlocks, typename S>
void launch_backward(const std::vector<BackwardJob<device_t<S>, state_t<S>>>& jobs, unsigned blocks,
                     size_t smem, bool vec) {
  using T = device_t<S>;
  using C = state_t<S>;
  launch_jobs(scan_backward_kernel<kMinBlocks, T, C>, scan_backward_jobs_kernel<kMinBlocks, T, C>,
              jobs, blocks, smem, vec, "scan_backward_kernel");
}

// Whether the 4-blocks build pays: the grid is more than one wave of 3 blocks per SM and 4 blocks
// of it fit in an SM's shared memory (bf16 at N = 16; f32 stages twice the bytes).
template <typename S>
bool four_blocks_per_sm(int64_t grid, size_t smem) {
  if (grid <= 3 * int64_t{multiprocessor_count()}) return false;
  auto kernel = scan_backward_jobs_kernel<4, device_t<S>, state_t<S>>;
  allow_shared_memory(kernel, smem);
  int fit = 0;
  DSSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, kThreads, smem));
  return fit >= 4;
}

// How many readers one launch joins to a scan: kMaxReaders, or fewer where their shared memory
// would pass the device's limit per block (f64).
template <typename S>
int reader_capacity(int64_t N, bool gated) {
  const size_t limit = static_cast<size_t>(max_shared_memory_per_block());
  int slots = kMaxReaders;
  while (slots > 1 && backward_smem<kReadersBuild, S>(N, gated, slots) > limit) --slots;
  const size_t needed = backward_smem<kReadersBuild, S>(N, gated, slots);
  DSSM_CHECK(needed <= limit, "dense_readout_pass backward",
             "a scan joined by one reader needs {} bytes of shared memory per block; this GPU "
             "allows {}",
             needed, limit);
  return slots;
}

// The readers of `job` beyond `capacity`, as scans of their own: one reader's C and gradient in
// the place of the scan's own (no D, no gate), joined by up to `capacity` more. G_t, and so du,
// ddelta, dA, dB and ddelta_bias, are linear in its terms: these scans add into the job's dA, dB,
// ddelta_bias and leave du, ddelta in `partial` buffers for the caller to add (in bf16 these
// shares are rounded once more than the rest); their dC is dropped (a reader's dC is computed by
// its own pass: ReadoutGradJob).
struct Overflow {
  std::vector<ScanBackwardJob> jobs;
  std::vector<std::pair<Tensor, Tensor>> partial;  // (the job's du or ddelta, a share of it)
};
void split_readers(ScanBackwardJob& job, const Tensor& entry, int capacity, Overflow& overflow) {
  std::vector<ScanReader> rest(job.readers.begin() + capacity, job.readers.end());
  job.readers.resize(static_cast<size_t>(capacity));
  for (size_t first = 0; first < rest.size(); first += static_cast<size_t>(capacity) + 1) {
    const size_t end = std::min(rest.size(), first + static_cast<size_t>(capacity) + 1);
    ScanInputs in = job.in;
    in.C = rest[first].C, in.D = Tensor(), in.z = Tensor();
    const ScanGradients& own = job.grads;
    ScanGradients g = own;
    g.du = Tensor::empty(own.du.shape(), own.du.dtype(), own.du.device());
    g.ddelta = Tensor::empty(own.ddelta.shape(), own.ddelta.dtype(), own.ddelta.device());
    g.dC = Tensor::zeros(own.dC.shape(), own.dC.dtype(), own.dC.device());
    g.dD = Tensor(), g.dz = Tensor();
    overflow.partial.push_back({own.du, g.du});
    overflow.partial.push_back({own.ddelta, g.ddelta});
    overflow.jobs.push_back(
        {in, rest[first].grad, Tensor(), g, entry,
         std::vector<ScanReader>(rest.begin() + first + 1, rest.begin() + end)});
  }
}

}  // namespace

void selective_scan_backward(const std::vector<ScanBackwardJob>& jobs_in) {
  if (jobs_in.empty()) return;
  const ScanInputs& in0 = jobs_in[0].in;
  const unsigned blocks = row_blocks(in0, kRows);
  if (blocks == 0) return;
  std::vector<ScanBackwardJob> jobs = jobs_in;
  bool vec = true;
  std::vector<Tensor> entries;  // the forward's, or computed here by the forward kernel
  std::vector<ScanForwardJob> missing;
  size_t readers = 0;
  for (const ScanBackwardJob& j : jobs) {
    vec = vec && vector_access(j.in, {j.grad_y, j.grads.du, j.grads.ddelta, j.grads.dz});
    for (const ScanReader& r : j.readers) vec = vec && vector_access(j.in, {r.C, r.grad});
    entries.push_back(j.chunk_entry.defined() ? j.chunk_entry : selective_scan_chunk_entry(j.in));
    if (!j.chunk_entry.defined()) missing.push_back({j.in, Tensor(), Tensor(), entries.back()});
    readers = std::max(readers, j.readers.size());
  }
  selective_scan_forward(missing);
  const int64_t N = in0.A.size(1);
  const bool gated = in0.z.defined();
  Overflow overflow;
  dispatch_floating(in0.u.dtype(), "selective_scan backward", [&]<typename S>() {
    using T = device_t<S>;
    using C = state_t<S>;
    const int capacity = reader_capacity<S>(N, gated);
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (std::ssize(jobs[j].readers) > capacity)
        split_readers(jobs[j], entries[j], capacity, overflow);
    }
    const int slots = static_cast<int>(std::min<size_t>(readers, static_cast<size_t>(capacity)));
    std::vector<BackwardJob<T, C>> device_jobs;
    for (size_t j = 0; j < jobs.size(); ++j) {
      const ScanGradients& g = jobs[j].grads;
      const BackwardOut<T, C> out{device_data<S>(g.du),
                                  device_data<S>(g.ddelta),
                                  g.dz.defined() ? device_data<S>(g.dz) : nullptr,
                                  state_data<S>(g.dA),
                                  state_data<S>(g.dB),
                                  state_data<S>(g.dC),
                                  state_data<S>(g.dD),
                                  state_data<S>(g.ddelta_bias),
                                  state_data<S>(entries[j])};
      BackwardJob<T, C> job{scan_args<S>(jobs[j].in),
                            device_data<S>(jobs[j].grad_y),
                            state_data<S>(jobs[j].grad_last_state),
                            out,
                            {},
                            {},
                            0,
                            slots};
      for (const ScanReader& r : jobs[j].readers) {
        job.reader_C[job.readers] = device_data<S>(r.C);
        job.reader_grad[job.readers++] = device_data<S>(r.grad);
      }
      device_jobs.push_back(job);
    }
    if (slots > 0) {
      launch_backward<kReadersBuild, S>(device_jobs, blocks,
                                        backward_smem<kReadersBuild, S>(N, gated, slots), vec);
      return;
    }
    const int64_t grid = int64_t{blocks} * std::min<int64_t>(std::ssize(jobs), kMaxScanJobs);
    if constexpr (!std::is_same_v<C, double>) {  // f64 (gradcheck) keeps the 3-blocks build
      const size_t smem = backward_smem<4, S>(N, gated, 0);
      if (four_blocks_per_sm<S>(grid, smem)) {
        launch_backward<4, S>(device_jobs, blocks, smem, vec);
        return;
      }
    }
    launch_backward<3, S>(device_jobs, blocks, backward_smem<3, S>(N, gated, 0), vec);
  });
  if (overflow.jobs.empty()) return;
  selective_scan_backward(overflow.jobs);
  for (const auto& [total, share] : overflow.partial) total.copy_from(add(total, share));
}

}  // namespace dssm::cuda
