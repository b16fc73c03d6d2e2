// CUDA gradient of a cross-layer read-out with respect to its C (DenseMamba, arXiv 2403.00818,
// Eq. 15-17): a deeper layer reads a scan's states out as r_t = C_t h_t, so that
//   dC[b, n, t] += sum_c grad[b, c, t] h_t[b, c, n],
// with the scan's states (ops/selective_scan.hpp)
//   dt_t = softplus(delta_t + delta_bias),
//   h_t[n] = exp(dt_t A[c, n]) h_{t-1}[n] + dt_t B[b, n, t] u_t,   h_{-1} = 0.
// The rest of the read-out's gradient, through h, joins the scan's own backward (ScanReader).
//
// The walk of the forward (cuda/selective_scan_forward.cu), without its output: 4 lanes per
// (b, c) row, 4 states each, 32 rows of one batch per block, chunks of 32 steps staged with
// cp.async one chunk ahead and converted once per block into f32 arrays (dt, dt u and grad per
// (row, step), B as [step][16]). Per step a lane advances its 4 states and forms grad_t h_t[n] for
// them. The sum over the channels goes through shared memory, as the backward's dB/dC exchange
// (cuda/selective_scan_backward.cu): sub-chunk by sub-chunk of 8 steps, each lane stores its 4
// values of every step, and after a barrier each of the block's 128 threads adds one (step, n)
// over the block's 32 rows and adds the sum to dC with one atomic.
#include "cuda/selective_scan_common.cuh"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

constexpr int kSub = 8;                  // steps per sub-chunk
constexpr int kSubs = kChunkLen / kSub;  // 4
static_assert(kSub * kMaxStates == kThreads, "one (step, n) sum per thread");

// The staged chunk: B (the one per-state array), then u, delta, grad of the block's rows.
constexpr int kStagedStates = 1;
constexpr int kStagedChannels = 3;

// Shared memory of a block, in C: per (row, step) [kRows][kPad] dt, dt u, grad; B [kChunkLen][16];
// bias [kRows]; the exchange area [kSub][kExchangeStride]; then the staged chunk in T.
constexpr int64_t shared_values() {
  return 3 * kRows * kPad + kChunkLen * kMaxStates + kRows + kSub * kExchangeStride;
}

template <typename C>
struct ReadoutArrays {
  C *dt, *dtu, *grad;  // [kRows][kPad]
  C* B;                // [kChunkLen][kMaxStates], zero past N
  C* bias;             // [kRows]
  C* sums;             // the exchange area [kSub][kExchangeStride]
};

template <typename C>
__device__ ReadoutArrays<C> carve(C* base) {
  ReadoutArrays<C> s;
  C* p = base;
  s.dt = p, p += kRows * kPad;
  s.dtu = p, p += kRows * kPad;
  s.grad = p, p += kRows * kPad;
  s.B = p, p += kChunkLen * kMaxStates;
  s.bias = p, p += kRows;
  s.sums = p;
  return s;
}

// The staged chunk into the f32 arrays: dt = softplus(delta + bias) (0 past the sequence or the
// channels: an identity step), dt u, grad, and B transposed.
template <typename T, typename C>
__device__ void convert_chunk(const T* staged, const ScanArgs<T>& a, int live_rows, int64_t t0,
                              const ReadoutArrays<C>& s) {
  const int N = static_cast<int>(a.N);
  const T* u = staged_channel(staged, N, kStagedStates, 0);
  const T* delta = staged_channel(staged, N, kStagedStates, 1);
  const T* grad = staged_channel(staged, N, kStagedStates, 2);
  // All loads before the stores, as in the forward's conversion.
  const int step = threadIdx.x % kChunkLen;
  const bool live_step = t0 + step < a.length;
  C uv[kConvertRows], pre[kConvertRows], gv[kConvertRows];
#pragma unroll
  for (int k = 0; k < kConvertRows; ++k) {
    const int j = convert_row(k), i = j * kChunkLen + step;
    uv[k] = to_compute(u[i]);
    pre[k] = to_compute(delta[i]) + s.bias[j];
    gv[k] = to_compute(grad[i]);
  }
#pragma unroll
  for (int k = 0; k < kConvertRows; ++k) {
    const int j = convert_row(k), at = j * kPad + step;
    const C dt = walk_dt(pre[k], live_step && j < live_rows, a.softplus);
    s.dt[at] = dt;
    s.dtu[at] = dt * uv[k];
    s.grad[at] = gv[k];
  }
  transpose_state_array(staged_state(staged, N, 0), N, s.B);
}

// Advances this lane's 4 states (state group g of row j) through the steps of sub-chunk sc and
// stores grad_t h_t[n] of each step i into the exchange's row i.
template <typename C>
__device__ __forceinline__ void walk_sub_chunk(const ReadoutArrays<C>& s, int j, int g, int sc,
                                               const C (&A2)[kStates], C (&h)[kStates]) {
  const int first = sc * kSub, slot = exchange_slot(j, g * kStates);
  C dt[kSub], dtu[kSub], grad[kSub];
  load_shared(s.dt + j * kPad + first, dt);
  load_shared(s.dtu + j * kPad + first, dtu);
  load_shared(s.grad + j * kPad + first, grad);
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    C Bv[kStates], dCv[kStates];
    load_shared(s.B + (first + i) * kMaxStates + g * kStates, Bv);
#pragma unroll
    for (int q = 0; q < kStates; ++q) {
      h[q] = fma(exp2_fast(dt[i] * A2[q]), h[q], dtu[i] * Bv[q]);
      dCv[q] = grad[i] * h[q];
    }
    store_shared(s.sums + i * kExchangeStride + slot, dCv);
  }
}

// Adds a sub-chunk's values over the block's 32 rows and adds the sums to dC[n, t0 + i] (of the
// block's batch): thread x adds step i = x / 16, state n = x % 16, with one atomic.
template <typename C>
__device__ __forceinline__ void add_exchange(const C* sums, int64_t t0, int64_t L, int64_t N,
                                             C* dC) {
  const int x = static_cast<int>(threadIdx.x);
  const int i = x / kMaxStates, n = x % kMaxStates;
  const C total = sum_exchange_rows(sums + i * kExchangeStride, n);
  const int64_t t = t0 + i;
  if (n < N && t < L) atomicAdd(dC + n * L + t, total);
}

// One read-out: the scan's operands (no C, D, z), its gradient grad and the dC it adds into.
template <typename T, typename C>
struct ReadoutJob {
  ScanArgs<T> a;
  const T* grad;
  C* dC;
};

template <typename T, typename C>
__device__ __forceinline__ void readout_dC_body(const ReadoutJob<T, C>& job, bool vec) {
  extern __shared__ __align__(16) unsigned char smem[];
  const ScanArgs<T>& a = job.a;
  const int64_t L = a.length, N = a.N;
  const int64_t chunks = (L + kChunkLen - 1) / kChunkLen;
  const BlockRows r = block_rows(a.channels);

  const ReadoutArrays<C> s = carve(reinterpret_cast<C*>(smem));
  T* stage = reinterpret_cast<T*>(reinterpret_cast<C*>(smem) + shared_values());
  const StagedArrays<T> arrays{{a.B}, kStagedStates, {a.u, a.delta, job.grad}, kStagedChannels};
  C* dC = job.dC + r.b * N * L;
  load_row_constants(a, r.c0, static_cast<C*>(nullptr), s.bias);
  C h[kStates] = {}, A2[kStates];
  load_A2(a, r, A2);
  if (chunks > 0) stage_chunk<T, C>(stage, a, arrays, r.b, r.c0, 0, vec, nullptr, nullptr);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t t0 = k * kChunkLen;
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk's copies have landed; the previous chunk's arrays are read
    convert_chunk(stage, a, r.live_rows, t0, s);
    __syncthreads();  // the arrays are written; the staged chunk is read
    if (k + 1 < chunks) {
      stage_chunk<T, C>(stage, a, arrays, r.b, r.c0, t0 + kChunkLen, vec, nullptr, nullptr);
    }
#pragma unroll
    for (int sc = 0; sc < kSubs; ++sc) {
      walk_sub_chunk(s, r.j, r.g, sc, A2, h);
      __syncthreads();  // every row's values of the sub-chunk are in the exchange
      add_exchange(s.sums, t0 + sc * kSub, L, N, dC);
      __syncthreads();  // the exchange is read: the next sub-chunk may write it
    }
  }
}

template <typename T, typename C>
__global__ __launch_bounds__(kThreads, kForwardWalkBlocksPerSm<C>) void readout_dC_kernel(
    const ReadoutJob<T, C> job, bool vec) {
  readout_dC_body(job, vec);
}
template <typename T, typename C>
__global__ __launch_bounds__(kThreads, kForwardWalkBlocksPerSm<C>) void readout_dC_jobs_kernel(
    const __grid_constant__ JobTable<ReadoutJob<T, C>> table, bool vec) {
  readout_dC_body(table.job[blockIdx.y], vec);
}

template <typename S>
void launch_readout_dC(const std::vector<ReadoutGradJob>& jobs, bool vec) {
  using T = device_t<S>;
  using C = state_t<S>;
  const ScanInputs& in0 = jobs[0].in;
  const size_t smem = sizeof(C) * static_cast<size_t>(shared_values()) +
                      sizeof(S) * static_cast<size_t>(staged_elements<S>(
                                      in0.A.size(1), kStagedStates, kStagedChannels));
  std::vector<ReadoutJob<T, C>> device_jobs;
  for (const ReadoutGradJob& job : jobs) {
    device_jobs.push_back({scan_args<S>(job.in), device_data<S>(job.grad), state_data<S>(job.dC)});
  }
  launch_jobs(readout_dC_kernel<T, C>, readout_dC_jobs_kernel<T, C>, device_jobs,
              row_blocks(in0, kRows), smem, vec, "readout_dC_kernel");
}

}  // namespace

void selective_scan_readout_dC(const std::vector<ReadoutGradJob>& jobs) {
  if (jobs.empty() || jobs[0].in.u.numel() == 0) return;  // no rows or no steps: nothing to add
  bool vec = true;
  for (const ReadoutGradJob& j : jobs) vec = vec && vector_access(j.in, {j.grad});
  dispatch_floating(jobs[0].in.u.dtype(), "dense_readout_pass backward",
                    [&]<typename S>() { launch_readout_dC<S>(jobs, vec); });
}

}  // namespace dssm::cuda
