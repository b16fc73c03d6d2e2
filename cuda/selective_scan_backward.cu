// CUDA backward of the selective scan (docs/ops-ssm.md derives it; ops/selective_scan.cpp has
// the CPU kernel). With G_t = dL/dh_t = C_t gy_t + a_{t+1} G_{t+1}, where gy_t = dL/dy_t before
// the gate, and P_t = G_t a_t h_{t-1}:
//   dA[c, n] = sum_t dt_t P_t[n]            ddt_t = sum_n (A[n] P_t[n] + G_t[n] B_t[n] u_t)
//   du_t     = sum_n G_t[n] B_t[n] dt_t + D gy_t       dB[b, n, t] = sum_c G_t[n] dt_t u_t
//   dC[b, n, t] = sum_c gy_t h_t[n]         dz_t = dL/dout_t silu'(z_t) y_t
//
// The layout of the forward (cuda/selective_scan_forward.cu): 4 adjacent lanes per (b, c) row,
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
// values of a step to shared memory, and after a barrier every thread adds one (kind, step, n)
// over the block's 32 rows and adds it to global memory with one atomic. dA, dD and ddelta_bias
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

// One scan of a launch of several (DenseMamba's cross-layer read-outs): blockIdx.y picks it.
// grad_last may be null.
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

// Shared memory of a block, in C: per (row, step) [kRows][kPad] dt, u (then du), gy (after the
// gate), the dz coefficient (then dz), softplus' (then ddelta); B, C [kChunkLen][16]; D, bias
// [kRows]; the entry states [16][kRows]; two dB/dC exchange areas [2][kSub][kSumStride]; then the
// staged chunk in T.
constexpr int kArrays = 5;
constexpr int64_t shared_values() {
  return kArrays * kRows * kPad + 2 * kChunkLen * kMaxStates + 2 * kRows + kMaxStates * kRows +
         2 * 2 * kSub * kSumStride;
}

template <typename C>
struct BackwardArrays {
  C *dt, *u, *gy, *zc, *dsp;  // [kRows][kPad]
  C *B, *C_;                  // [kChunkLen][kMaxStates], zero past N
  C *D, *bias;                // [kRows]
  C* entry;                   // [kMaxStates][kRows]
  C* sums;                    // [2][2 kinds][kSub][kSumStride]
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
  s.entry = p, p += kMaxStates * kRows;
  s.sums = p;
  return s;
}

// The staged chunk (B, C, then u, delta, grad_y, z of the block's rows) into the f32 arrays.
template <typename T, typename C>
__device__ void convert_chunk(const T* staged, const ScanArgs<T>& a, int live_rows, int64_t t0,
                              const BackwardArrays<C>& s) {
  const int N = static_cast<int>(a.N);
  const T* u = staged + 2 * N * kChunkLen;
  const T* delta = u + kRows * kChunkLen;
  const T* gy = delta + kRows * kChunkLen;
  const T* z = gy + kRows * kChunkLen;
  const int step = threadIdx.x % kChunkLen;
  const bool live_step = t0 + step < a.length;
  for (int j = threadIdx.x / kChunkLen; j < kRows; j += kThreads / kChunkLen) {
    const int i = j * kChunkLen + step, at = j * kPad + step;
    const C pre = to_compute(delta[i]) + s.bias[j], g = to_compute(gy[i]);
    const bool live = live_step && j < live_rows;
    s.dt[at] = live ? (a.softplus ? softplus_fast(pre) : pre) : C(0);  // 0: an identity step
    s.dsp[at] = a.softplus ? sigmoid_fast(pre) : C(1);
    s.u[at] = to_compute(u[i]);
    if (a.z) {  // out = y silu(z): dL/dy = g silu(z), dL/dz = g silu'(z) y
      const C zv = to_compute(z[i]), sig = sigmoid_fast(zv);
      s.gy[at] = g * zv * sig;
      s.zc[at] = g * sig * fma(zv, C(1) - sig, C(1));
    } else {
      s.gy[at] = g;
      s.zc[at] = C(0);
    }
  }
  const int n = threadIdx.x % kMaxStates;
  for (int st = threadIdx.x / kMaxStates; st < kChunkLen; st += kThreads / kMaxStates) {
    s.B[st * kMaxStates + n] = n < N ? to_compute(staged[n * kChunkLen + st]) : C(0);
    s.C_[st * kMaxStates + n] = n < N ? to_compute(staged[(N + n) * kChunkLen + st]) : C(0);
  }
}

// h_t = a_t h_{t-1} + dt_t u_t B_t for this lane's 4 states at step `step` of the chunk; returns
// a_t in `a`.
template <typename C>
__device__ __forceinline__ void step_states(const BackwardArrays<C>& s, int j, int g, int step,
                                            const C (&A2)[kStates], C (&h)[kStates],
                                            C (&a)[kStates]) {
  const C dt = s.dt[j * kPad + step], dtu = dt * s.u[j * kPad + step];
  C Bv[kStates];
  load_shared(s.B + step * kMaxStates + g * kStates, Bv);
#pragma unroll
  for (int q = 0; q < kStates; ++q) {
    a[q] = exp2_fast(dt * A2[q]);
    h[q] = fma(a[q], h[q], dtu * Bv[q]);
  }
}

template <typename T, typename C>
__device__ __forceinline__ void scan_backward_body(const ScanArgs<T>& a, const T* grad_y,
                                                   const C* grad_last, const BackwardOut<T, C>& o,
                                                   bool vec) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t L = a.length, N = a.N, rows = a.batch * a.channels;
  const int64_t chunks = (L + kChunkLen - 1) / kChunkLen;
  const int64_t blocks_per_batch = (a.channels + kRows - 1) / kRows;
  const int64_t b = blockIdx.x / blocks_per_batch, c0 = (blockIdx.x % blocks_per_batch) * kRows;
  const int j = threadIdx.x / kGroups, g = threadIdx.x % kGroups;  // row in block, state group
  const int64_t c = c0 + j, row = b * a.channels + c;
  const bool valid = c < a.channels;
  const int live_rows = static_cast<int>(std::min<int64_t>(kRows, a.channels - c0));

  const BackwardArrays<C> s = carve(reinterpret_cast<C*>(smem));
  T* stage = reinterpret_cast<T*>(reinterpret_cast<C*>(smem) + shared_values());
  const ChannelArrays<T> arrays{a.u, a.delta, grad_y, a.z, a.z ? 4 : 3};
  for (int i = threadIdx.x; i < kRows; i += kThreads) {
    const bool ok = c0 + i < a.channels;
    s.D[i] = ok && a.D ? to_compute(a.D[c0 + i]) : C(0);
    s.bias[i] = ok && a.bias ? to_compute(a.bias[c0 + i]) : C(0);
  }
  C A2[kStates], Q[kStates], dA[kStates];
#pragma unroll
  for (int q = 0; q < kStates; ++q) {
    const int n = g * kStates + q;
    const bool live = valid && n < N;
    A2[q] = live ? to_compute(a.A[c * N + n]) * kLog2e<C> : C(0);
    Q[q] = live && grad_last ? grad_last[row * N + n] : C(0);  // a_{t+1} G_{t+1} past the end
    dA[q] = C(0);
  }
  C dD = C(0), dbias = C(0);
  const C D = valid && a.D ? to_compute(a.D[c]) : C(0);
  auto stage_k = [&](int64_t k) {
    stage_chunk<kRows, T, C>(stage, a, arrays, b, c0, k * kChunkLen, vec, o.entry + k * N * rows,
                             s.entry);
  };
  if (chunks > 0) stage_k(chunks - 1);
  int parity = 0;  // which dB/dC exchange area the next sub-chunk writes
  for (int64_t k = chunks - 1; k >= 0; --k) {
    const int64_t t0 = k * kChunkLen;
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk's copies have landed; the previous chunk's arrays are stored
    convert_chunk(stage, a, live_rows, t0, s);
    C h[kStates], a_t[kStates];
#pragma unroll
    for (int q = 0; q < kStates; ++q) {
      const int n = g * kStates + q;
      h[q] = n < N ? s.entry[n * kRows + j] : C(0);
    }
    __syncthreads();  // the arrays are written; the staged chunk and entry states are read
    if (k > 0) stage_k(k - 1);

    // The state entering each sub-chunk.
    C h_sub[kSubs][kStates];
#pragma unroll
    for (int sc = 0; sc < kSubs; ++sc) {
#pragma unroll
      for (int q = 0; q < kStates; ++q) h_sub[sc][q] = h[q];
#pragma unroll
      for (int i = 0; i < kSub; ++i) step_states(s, j, g, sc * kSub + i, A2, h, a_t);
    }

#pragma unroll
    for (int sc = kSubs - 1; sc >= 0; --sc) {
      // This sub-chunk's a_t and h_t, from the state entering it.
      C av[kSub][kStates], hv[kSub][kStates];
#pragma unroll
      for (int q = 0; q < kStates; ++q) h[q] = h_sub[sc][q];
#pragma unroll
      for (int i = 0; i < kSub; ++i) {
        step_states(s, j, g, sc * kSub + i, A2, h, av[i]);
#pragma unroll
        for (int q = 0; q < kStates; ++q) hv[i][q] = h[q];
      }
      // Reverse steps. parts[i][0..2]: this lane's sums over its states of A2 P, G B and C h.
      C parts[kSub * 3];
      C* sums = s.sums + parity * 2 * kSub * kSumStride;
#pragma unroll
      for (int i = kSub - 1; i >= 0; --i) {
        const int step = sc * kSub + i, at = j * kPad + step;
        const C dt = s.dt[at], dtu = dt * s.u[at], gy = s.gy[at];
        C Bv[kStates], Cv[kStates], dBv[kStates], dCv[kStates];
        load_shared(s.B + step * kMaxStates + g * kStates, Bv);
        load_shared(s.C_ + step * kMaxStates + g * kStates, Cv);
        C pd = C(0), pg = C(0), py = C(0);
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          const C G = fma(Cv[q], gy, Q[q]);
          const C aG = av[i][q] * G;
          const C P = aG * (i > 0 ? hv[i - 1][q] : h_sub[sc][q]);
          Q[q] = aG;
          dA[q] = fma(dt, P, dA[q]);
          pd = fma(A2[q], P, pd);
          pg = fma(G, Bv[q], pg);
          py = fma(Cv[q], hv[i][q], py);
          dBv[q] = G * dtu;
          dCv[q] = gy * hv[i][q];
        }
        parts[i * 3] = pd, parts[i * 3 + 1] = pg, parts[i * 3 + 2] = py;
        store_shared(sums + i * kSumStride + j * kMaxStates + g * kStates, dBv);
        store_shared(sums + (kSub + i) * kSumStride + j * kMaxStates + g * kStates, dCv);
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
      {
        // Thread x adds (kind x / 64, step x / 16 % 4, n x % 16) over the 32 rows.
        const int kind = threadIdx.x / (kSub * kMaxStates), i = (threadIdx.x / kMaxStates) % kSub;
        const int n = threadIdx.x % kMaxStates;
        const C* col = sums + (kind * kSub + i) * kSumStride + n;
        C total = C(0);
#pragma unroll 8
        for (int r = 0; r < kRows; ++r) total += col[r * kMaxStates];
        const int64_t t = t0 + sc * kSub + i;
        if (n < N && t < L) atomicAdd((kind ? o.dC : o.dB) + (b * N + n) * L + t, total);
      }
      parity ^= 1;  // the other area: its last readers passed the barrier above
    }
    __syncthreads();  // du, ddelta, dz of the chunk are in the arrays
    {
      C du[kChunkLen / kGroups], dd[kChunkLen / kGroups], dz[kChunkLen / kGroups];
      const int first = g * (kChunkLen / kGroups);
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

// Up to 168 registers: 3 blocks of 128 threads per SM (as the shared memory allows).
template <typename T, typename C>
__global__ __launch_bounds__(kThreads, 3) void scan_backward_kernel(ScanArgs<T> a, const T* grad_y,
                                                                    const C* grad_last,
                                                                    BackwardOut<T, C> o, bool vec) {
  scan_backward_body(a, grad_y, grad_last, o, vec);
}
template <typename T, typename C>
__global__ __launch_bounds__(kThreads, 3) void scan_backward_jobs_kernel(
    const __grid_constant__ BackwardJobs<T, C> jobs, bool vec) {
  const BackwardJob<T, C>& job = jobs.job[blockIdx.y];
  scan_backward_body(job.a, job.grad_y, job.grad_last, job.o, vec);
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
    const size_t smem =
        sizeof(C) * static_cast<size_t>(shared_values()) +
        sizeof(S) * static_cast<size_t>(stage_rows<kRows>(in0.A.size(1), arrays) * kChunkLen);
    auto one = scan_backward_kernel<T, C>;
    auto many = scan_backward_jobs_kernel<T, C>;
    allow_shared_memory(one, smem);
    allow_shared_memory(many, smem);
    in_groups(jobs, [&](size_t first, size_t count) {
      BackwardJobs<T, C> group{};
      for (size_t j = 0; j < count; ++j) {
        const ScanBackwardJob& job = jobs[first + j];
        const ScanGradients& g = job.grads;
        const BackwardOut<T, C> out{device_data<S>(g.du),
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
      if (count == 1) {
        const BackwardJob<T, C>& j = group.job[0];
        one<<<blocks, kThreads, smem, current_stream()>>>(j.a, j.grad_y, j.grad_last, j.o, vec);
      } else {
        const dim3 grid(blocks, static_cast<unsigned>(count));
        many<<<grid, kThreads, smem, current_stream()>>>(group, vec);
      }
      DSSM_CUDA_CHECK_LAUNCH("scan_backward_kernel");
    });
  });
}

}  // namespace dssm::cuda
