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
// are summed in registers over the sequence and added once per row.
#include "cuda/selective_scan_common.cuh"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

constexpr int kSub = 4;                  // steps per sub-chunk: a lane finishes one of them
constexpr int kSubs = kChunkLen / kSub;  // 8
constexpr int kSumStride = kRows * kMaxStates + kMaxStates;  // padded: no bank conflicts
static_assert(kSub == kGroups, "each lane of a row finishes one step of a sub-chunk");
static_assert(2 * kSub * kMaxStates == kThreads, "one (kind, step, n) sum per thread");

template <typename T, typename C>
struct BackwardOut {
  T *du, *ddelta, *dz;
  C *dA, *dB, *dC, *dD, *dbias;
  const C* entry;  // [chunks, N, rows] states entering each chunk
};

// One scan; grad_last may be null.
template <typename T, typename C>
struct BackwardJob {
  ScanArgs<T> a;
  const T* grad_y;
  const C* grad_last;
  BackwardOut<T, C> o;
};

// The kernel comes in two builds. For grids of more than one wave of 3 blocks per SM (batch 8 of
// Mamba-360M's width: 512 blocks on 132 SMs), up to 128 registers and one dB/dC exchange area, so
// that 4 blocks of bf16 fit in an SM (55 KB of shared memory each) and the grid runs in one wave;
// one more barrier per sub-chunk. Smaller grids run ~2 blocks per SM either way: up to 168
// registers and two exchange areas used in turns, 5 % faster there (batch 4).
constexpr int exchange_areas(int min_blocks) {
  return min_blocks >= 4 ? 1 : 2;
}

// Shared memory of a block, in C: per (row, step) [kRows][kPad] dt, u (then du), gy (after the
// gate), the dz coefficient (then dz), softplus' (then ddelta); B, C [kChunkLen][16]; D, bias
// [kRows]; the entry states [16][kEntryStride]; the dB/dC exchange areas [areas][2 kinds][kSub]
// [kSumStride]; then the staged chunk in T.
constexpr int kArrays = 5;
constexpr int64_t shared_values(int areas) {
  return kArrays * kRows * kPad + 2 * kChunkLen * kMaxStates + 2 * kRows +
         kMaxStates * kEntryStride + areas * 2 * kSub * kSumStride;
}

// Where row j keeps state group g's values in the dB/dC exchange: group g ^ (j & 2), so that the
// 16-byte stores of a quarter warp (rows j0 .. j0 + 3, two groups: block_rows()) fill 8 distinct
// bank quads: state n of row j is at j * 16 + (n ^ (j & 2) * 4).
__device__ __forceinline__ int exchange_group(int j, int g) {
  return g ^ (j & 2);
}

template <typename C>
struct BackwardArrays {
  C *dt, *u, *gy, *zc, *dsp;  // [kRows][kPad]
  C *B, *C_;                  // [kChunkLen][kMaxStates], zero past N
  C *D, *bias;                // [kRows]
  C* entry;                   // [kMaxStates][kEntryStride]
  C* sums;                    // [areas][2 kinds][kSub][kSumStride]
};

template <typename C>
__device__ BackwardArrays<C> carve(C* base) {
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
  s.sums = p;
  return s;
}

// The staged chunk (B, C, then u, delta, grad_y, z of the block's rows) into the f32 arrays.
template <typename T, typename C>
__device__ void convert_chunk(const T* staged, const ScanArgs<T>& a, int live_rows, int64_t t0,
                              const BackwardArrays<C>& s) {
  const int N = static_cast<int>(a.N);
  const T *u = staged_channel(staged, N, 0), *delta = staged_channel(staged, N, 1),
          *gy = staged_channel(staged, N, 2), *z = staged_channel(staged, N, 3);
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
  const C* col = sums + (kind * kSub + i) * kSumStride;
  C total = C(0);
#pragma unroll 8
  for (int r = 0; r < kRows; ++r) total += col[r * kMaxStates + (n ^ ((r & 2) * 4))];
  const int64_t t = t0 + i;
  if (n < N && t < L) atomicAdd((kind ? dC : dB) + n * L + t, total);
}

template <int kAreas, typename T, typename C>
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

  const BackwardArrays<C> s = carve(reinterpret_cast<C*>(smem));
  T* stage = reinterpret_cast<T*>(reinterpret_cast<C*>(smem) + shared_values(kAreas));
  const ChannelArrays<T> arrays{a.u, a.delta, job.grad_y, a.z, a.z ? 4 : 3};
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
    convert_chunk(stage, a, r.live_rows, t0, s);
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
      C* sums = s.sums + area * 2 * kSub * kSumStride;
#pragma unroll
      for (int i = kSub - 1; i >= 0; --i) {
        const int step = sc * kSub + i;
        C Bv[kStates], Cv[kStates], dBv[kStates], dCv[kStates];
        load_shared(s.B + step * kMaxStates + g * kStates, Bv);
        load_shared(s.C_ + step * kMaxStates + g * kStates, Cv);
        C pd = C(0), pg = C(0), py = C(0);
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          const C G = fma(Cv[q], gy[i], Q[q]);
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
        const int at = j * kMaxStates + exchange_group(j, g) * kStates;
        store_shared(sums + i * kSumStride + at, dBv);
        store_shared(sums + (kSub + i) * kSumStride + at, dCv);
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
  scan_backward_body<exchange_areas(kMinBlocks)>(job, vec);
}
template <int kMinBlocks, typename T, typename C>
__global__ __launch_bounds__(kThreads, kMinBlocks) void scan_backward_jobs_kernel(
    const __grid_constant__ JobTable<BackwardJob<T, C>> table, bool vec) {
  scan_backward_body<exchange_areas(kMinBlocks)>(table.job[blockIdx.y], vec);
}

// Launches the build for kMinBlocks blocks per SM.
template <int kMinBlocks, typename S>
void launch_backward(const std::vector<BackwardJob<device_t<S>, state_t<S>>>& jobs, unsigned blocks,
                     size_t staged_bytes, bool vec) {
  using T = device_t<S>;
  using C = state_t<S>;
  const size_t smem =
      sizeof(C) * static_cast<size_t>(shared_values(exchange_areas(kMinBlocks))) + staged_bytes;
  launch_jobs(scan_backward_kernel<kMinBlocks, T, C>, scan_backward_jobs_kernel<kMinBlocks, T, C>,
              jobs, blocks, smem, vec, "scan_backward_kernel");
}

// Whether the 4-blocks build pays: the grid is more than one wave of 3 blocks per SM and 4 blocks
// of it fit in an SM's shared memory (bf16 at N = 16; f32 stages twice the bytes).
template <typename S>
bool four_blocks_per_sm(int64_t grid, size_t staged_bytes) {
  if (grid <= 3 * int64_t{multiprocessor_count()}) return false;
  auto kernel = scan_backward_jobs_kernel<4, device_t<S>, state_t<S>>;
  const size_t smem =
      sizeof(state_t<S>) * static_cast<size_t>(shared_values(exchange_areas(4))) + staged_bytes;
  allow_shared_memory(kernel, smem);
  int fit = 0;
  DSSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, kThreads, smem));
  return fit >= 4;
}

}  // namespace

void selective_scan_backward(const std::vector<ScanBackwardJob>& jobs) {
  if (jobs.empty()) return;
  const ScanInputs& in0 = jobs[0].in;
  const unsigned blocks = row_blocks(in0, kRows);
  if (blocks == 0) return;
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
    using T = device_t<S>;
    using C = state_t<S>;
    const int arrays = in0.z.defined() ? 4 : 3;
    const size_t staged_bytes =
        sizeof(S) * static_cast<size_t>(staged_elements<S>(in0.A.size(1), arrays));
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
      device_jobs.push_back({scan_args<S>(jobs[j].in), device_data<S>(jobs[j].grad_y),
                             state_data<S>(jobs[j].grad_last_state), out});
    }
    const int64_t grid = int64_t{blocks} * std::min<int64_t>(std::ssize(jobs), kMaxScanJobs);
    if constexpr (!std::is_same_v<C, double>) {  // f64 (gradcheck) keeps the 3-blocks build
      if (four_blocks_per_sm<S>(grid, staged_bytes)) {
        launch_backward<4, S>(device_jobs, blocks, staged_bytes, vec);
        return;
      }
    }
    launch_backward<3, S>(device_jobs, blocks, staged_bytes, vec);
  });
}

}  // namespace dssm::cuda
