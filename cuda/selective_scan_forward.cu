// CUDA forward of the selective scan (ops/selective_scan.cpp has the math and the CPU kernel):
//   h_t = a_t h_{t-1} + b_t,  a_t = exp(dt_t A[c, n]),  b_t = dt_t B_t[n] u_t,
//   y_t = sum_n C_t[n] h_t[n] + D u_t,   out_t = y_t silu(z_t).
//
// A thread walks the whole sequence of one (batch, channel) row serially, holding 4 of the row's
// 16 states in registers; the 4 threads of a row (block_rows() says which lanes) add their partial
// read-outs C_t . h_t with shuffles. No scan across threads is needed: per step and state the work
// is one ex2 (on the SFU, a quarter of the f32 rate) and four f32 instructions, and the recurrence
// runs in time order, as on the CPU. A block of 128 threads holds 32 rows (channels) of one batch
// and walks time in chunks of kChunkLen steps. The chunk's operands (u, delta, z of the block's
// rows, B and C) are copied to shared memory with cp.async while the previous chunk is computed; at
// the start of a chunk the block converts them once into f32 arrays: dt = softplus(delta + bias),
// dt u, D u, silu(z) per (row, step), and B, C transposed to [step][n], so that a thread reads its
// 4 values of B_t or C_t with one 16-byte load that every row of the warp shares. The state
// entering each chunk is stored for the backward when asked for.
//
// Four threads of 4 states per row rather than two of 8: twice the warps to hide the latencies of
// the SFU and shared memory with. Measured on the H200 at batch 8 (docs/benchmarks.md): 0.36 ms
// against 0.43 ms with two threads of 8 states (whose shuffles to add the read-outs are fewer).
#include "cuda/selective_scan_common.cuh"

namespace dssm::cuda {
namespace {

using namespace scan_kernels;

// Shared memory of a block, in C: dt, dt u, D u, silu(z) [kRows][kPad]; B, C [kChunkLen][16];
// D, bias [kRows]; then the staged chunk in T.
constexpr int64_t shared_values() {
  return 4 * kRows * kPad + 2 * kChunkLen * kMaxStates + 2 * kRows;
}

// The per-step arrays of one staged chunk, converted once for the whole block.
template <typename C>
struct StepArrays {
  C *dt, *dtu, *du, *gate;  // [kRows][kPad]
  C *B, *C_;                // [kChunkLen][kMaxStates], zero past N
  C *D, *bias;              // [kRows]
};

template <typename T, typename C>
__device__ void convert_chunk(const T* staged, const ScanArgs<T>& a, int live_rows, int64_t t0,
                              const StepArrays<C>& s) {
  const int N = static_cast<int>(a.N);
  const T *u = staged_channel(staged, N, 2, 0), *delta = staged_channel(staged, N, 2, 1),
          *z = staged_channel(staged, N, 2, 2);
  // A thread loads all of its values before storing any: a load issued after a store to shared
  // memory waits for it, as the compiler cannot tell the staged chunk and the arrays apart.
  const int step = threadIdx.x % kChunkLen;
  const bool live_step = t0 + step < a.length;
  C uv[kConvertRows], pre[kConvertRows], zv[kConvertRows], D[kConvertRows];
#pragma unroll
  for (int k = 0; k < kConvertRows; ++k) {
    const int j = convert_row(k), i = j * kChunkLen + step;
    uv[k] = to_compute(u[i]);
    pre[k] = to_compute(delta[i]) + s.bias[j];
    zv[k] = a.z ? to_compute(z[i]) : C(0);
    D[k] = s.D[j];
  }
#pragma unroll
  for (int k = 0; k < kConvertRows; ++k) {
    const int j = convert_row(k), at = j * kPad + step;
    const C dt = walk_dt(pre[k], live_step && j < live_rows, a.softplus);
    s.dt[at] = dt;
    s.dtu[at] = dt * uv[k];
    s.du[at] = D[k] * uv[k];
    s.gate[at] = a.z ? silu_fast(zv[k]) : C(1);
  }
  transpose_B_C(staged, N, s.B, s.C_);
}

// One scan: y (no output: only the entry states, for a backward), last_state and entry may be
// null.
template <typename T, typename C>
struct ForwardJob {
  ScanArgs<T> a;
  T* y;
  C* last_state;
  C* entry;
};

template <typename T, typename C>
__device__ __forceinline__ void scan_forward_body(const ForwardJob<T, C>& job, bool vec) {
  extern __shared__ __align__(16) unsigned char smem[];
  const ScanArgs<T>& a = job.a;
  T* y = job.y;
  const int64_t L = a.length, N = a.N, rows = a.batch * a.channels;
  const int64_t chunks = (L + kChunkLen - 1) / kChunkLen;
  const BlockRows r = block_rows(a.channels);
  const int j = r.j, g = r.g;
  const int64_t b = r.b, c0 = r.c0, row = r.row;
  const bool valid = r.valid;

  C* base = reinterpret_cast<C*>(smem);
  const StepArrays<C> s{base,
                        base + kRows * kPad,
                        base + 2 * kRows * kPad,
                        base + 3 * kRows * kPad,
                        base + 4 * kRows * kPad,
                        base + 4 * kRows * kPad + kChunkLen * kMaxStates,
                        base + 4 * kRows * kPad + 2 * kChunkLen * kMaxStates,
                        base + 4 * kRows * kPad + 2 * kChunkLen * kMaxStates + kRows};
  T* stage = reinterpret_cast<T*>(base + shared_values());
  const StagedArrays<T> arrays{{a.B, a.C}, 2, {a.u, a.delta, a.z}, a.z ? 3 : 2};
  load_row_constants(a, c0, s.D, s.bias);
  C h[kStates] = {}, A2[kStates];
  load_A2(a, r, A2);
  if (chunks > 0) stage_chunk<T, C>(stage, a, arrays, b, c0, 0, vec, nullptr, nullptr);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t t0 = k * kChunkLen;
    __pipeline_wait_prior(0);
    __syncthreads();  // the chunk's copies have landed; the previous chunk's arrays are read
    convert_chunk(stage, a, r.live_rows, t0, s);
    __syncthreads();  // the arrays are written; the staged chunk is read
    if (k + 1 < chunks)
      stage_chunk<T, C>(stage, a, arrays, b, c0, t0 + kChunkLen, vec, nullptr, nullptr);
    if (job.entry && valid) {
#pragma unroll
      for (int q = 0; q < kStates; ++q) {
        const int n = g * kStates + q;
        if (n < N) job.entry[(k * N + n) * rows + row] = h[q];
      }
    }
    C out[kChunkLen];
#pragma unroll
    for (int i0 = 0; i0 < kChunkLen; i0 += 4) {
      C dt[4], dtu[4];
      load_shared(s.dt + j * kPad + i0, dt);
      load_shared(s.dtu + j * kPad + i0, dtu);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        C Bv[kStates], Cv[kStates];
        load_shared(s.B + (i0 + i) * kMaxStates + g * kStates, Bv);
        load_shared(s.C_ + (i0 + i) * kMaxStates + g * kStates, Cv);
        C acc = C(0);
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          h[q] = fma(exp2_fast(dt[i] * A2[q]), h[q], dtu[i] * Bv[q]);
          acc = fma(Cv[q], h[q], acc);
        }
        out[i0 + i] = acc;
      }
    }
    if (y) {
      // The reduce-scatter leaves lane g the sums of block g of its input: handing it the blocks
      // in own_block() order leaves it those of its own steps.
      C sums[kChunkLen];
#pragma unroll
      for (int i = 0; i < kChunkLen; ++i) {
        sums[i] = out[own_block(i / kOwnSteps) * kOwnSteps + i % kOwnSteps];
      }
      sum_over_groups(sums, g);
      const int first = own_block(g) * kOwnSteps;
      C du[kOwnSteps], gate[kOwnSteps], res[kOwnSteps];
      load_shared(s.du + j * kPad + first, du);
      load_shared(s.gate + j * kPad + first, gate);
#pragma unroll
      for (int i = 0; i < kOwnSteps; ++i) res[i] = (sums[i] + du[i]) * gate[i];
      store_items(y + row * L, t0 + first, L, valid, vec, res);
    }
  }
  if (job.last_state && valid) {
#pragma unroll
    for (int q = 0; q < kStates; ++q) {
      const int n = g * kStates + q;
      if (n < N) job.last_state[row * N + n] = h[q];
    }
  }
}

template <typename T, typename C>
__global__ __launch_bounds__(kThreads, kForwardWalkBlocksPerSm<C>) void scan_forward_kernel(
    const ForwardJob<T, C> job, bool vec) {
  scan_forward_body(job, vec);
}
template <typename T, typename C>
__global__ __launch_bounds__(kThreads, kForwardWalkBlocksPerSm<C>) void scan_forward_jobs_kernel(
    const __grid_constant__ JobTable<ForwardJob<T, C>> table, bool vec) {
  scan_forward_body(table.job[blockIdx.y], vec);
}

template <typename S>
void launch_forward(const std::vector<ScanForwardJob>& jobs, bool vec) {
  using T = device_t<S>;
  using C = state_t<S>;
  const ScanInputs& in0 = jobs[0].in;
  const int arrays = in0.z.defined() ? 3 : 2;
  const size_t smem = sizeof(C) * static_cast<size_t>(shared_values()) +
                      sizeof(S) * static_cast<size_t>(staged_elements<S>(in0.A.size(1), 2, arrays));
  std::vector<ForwardJob<T, C>> device_jobs;
  for (const ScanForwardJob& job : jobs) {
    device_jobs.push_back({scan_args<S>(job.in), job.y.defined() ? device_data<S>(job.y) : nullptr,
                           state_data<S>(job.last_state), state_data<S>(job.chunk_entry)});
  }
  launch_jobs(scan_forward_kernel<T, C>, scan_forward_jobs_kernel<T, C>, device_jobs,
              row_blocks(in0, kRows), smem, vec, "scan_forward_kernel");
}

}  // namespace

void selective_scan_forward(const std::vector<ScanForwardJob>& jobs) {
  if (jobs.empty()) return;
  const ScanInputs& in0 = jobs[0].in;
  if (in0.u.size(0) * in0.u.size(1) == 0) return;
  bool vec = true;
  for (const ScanForwardJob& j : jobs) vec = vec && vector_access(j.in, {j.y});
  dispatch_floating(in0.u.dtype(), "selective_scan",
                    [&]<typename S>() { launch_forward<S>(jobs, vec); });
}

Tensor selective_scan_chunk_entry(const ScanInputs& in) {
  const int64_t rows = in.u.size(0) * in.u.size(1), N = in.A.size(1);
  const int64_t chunks = (in.u.size(2) + kChunkLen - 1) / kChunkLen;
  return Tensor::empty({chunks, N, rows}, scan_state_dtype(in.u.dtype()), in.u.device());
}

}  // namespace dssm::cuda
