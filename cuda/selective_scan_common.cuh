// What the kernels of the selective scan (cuda/selective_scan_forward.cu, _backward.cu, _step.cu)
// share: their arguments, the per-step functions, the chunks of time steps they walk the sequence
// in and their copy into shared memory, the layout of rows of states, and the launch helpers.
#pragma once

#include <cuda_pipeline.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/items.cuh"
#include "cuda/kernels_ssm.hpp"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda::scan_kernels {

constexpr unsigned kFullMask = 0xffffffffu;
// Both kernels walk time in chunks of this many steps; the forward stores the state entering each
// chunk ([chunks, N, rows]) for the backward.
constexpr int kChunkLen = 32;
constexpr int kThreads = 128;  // per block, both kernels

template <typename T>  // T: the device element type (__nv_bfloat16, float, double)
struct ScanArgs {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias;
  int64_t batch, channels, length, N;
  bool softplus;
};

template <typename S>
ScanArgs<device_t<S>> scan_args(const ScanInputs& in) {
  auto ptr = [](const Tensor& t) { return t.defined() ? device_data<S>(t) : nullptr; };
  return {ptr(in.u),
          ptr(in.delta),
          ptr(in.A),
          ptr(in.B),
          ptr(in.C),
          ptr(in.D),
          ptr(in.z),
          ptr(in.delta_bias),
          in.u.size(0),
          in.u.size(1),
          in.u.dim() == 3 ? in.u.size(2) : 1,
          in.A.size(1),
          in.delta_softplus};
}

// 2^x: the SFU instruction for f32 (relative error ~2^-22), the accurate one for f64.
__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ double exp2_fast(double x) {
  return ::exp2(x);
}

template <typename C>
constexpr C kLog2e = C(1.4426950408889634);

// The per-(channel, step) functions of both kernels: in f32 from the SFU's ex2, lg2 and rcp
// (relative error ~1e-6, a tenth of the instructions of the accurate library functions); f64
// keeps the accurate forms of ops/elementwise_math.hpp.
__device__ __forceinline__ float log2_fast(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float reciprocal_fast(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// softplus(x) = ln 2 log2(1 + e^x) and its derivative sigmoid(x) = e^x / (1 + e^x), from one ex2.
// For e^x < 2^-6, where 1 + e^x loses e^x's digits, softplus takes the series log1p(e) = e - e^2/2
// + e^3/3 - e^4/4 (error below e^5/5). Above x = 20 they are x and 1, as math::softplus.
__device__ __forceinline__ void softplus_and_sigmoid_fast(float x, float& softplus,
                                                          float& sigmoid) {
  const float e = exp2_fast(x * kLog2e<float>), one_plus = 1.0f + e;
  const float series = e * fmaf(e, fmaf(e, fmaf(e, -0.25f, 1.0f / 3.0f), -0.5f), 1.0f);
  const float logged = log2_fast(one_plus) * 0.6931471805599453f;
  softplus = x > 20.0f ? x : (e < 0x1p-6f ? series : logged);
  sigmoid = x > 20.0f ? 1.0f : e * reciprocal_fast(one_plus);
}
__device__ __forceinline__ void softplus_and_sigmoid_fast(double x, double& softplus,
                                                          double& sigmoid) {
  softplus = math::softplus(x);
  sigmoid = math::sigmoid(x);
}
template <typename C>
__device__ __forceinline__ C softplus_fast(C x) {
  C softplus, sigmoid;
  softplus_and_sigmoid_fast(x, softplus, sigmoid);
  return softplus;
}
// dt of a staged (row, step) in the forward's walk (the forward and the read-out's dC):
// softplus(delta + bias) when the scan asks for it, else delta + bias; 0 past the sequence or the
// block's channels, an identity step (a_t = 1, b_t = 0).
template <typename C>
__device__ __forceinline__ C walk_dt(C pre, bool live, bool softplus) {
  return live ? (softplus ? softplus_fast(pre) : pre) : C(0);
}
// Blocks per SM of the kernels that walk as the forward does (the forward, the read-out's dC): up
// to 96 registers in f32 (it needs no more), so 5 blocks of 128 threads, which grids of more than 4
// blocks per SM use (several scans in one launch) and bf16's shared memory allows; f64 up to 128.
template <typename C>
constexpr int kForwardWalkBlocksPerSm = sizeof(C) == 8 ? 4 : 5;
// sigmoid(x) = 1 / (1 + e^-x) (1 / inf = 0 far below 0); silu(z) = z sigmoid(z).
__device__ __forceinline__ float sigmoid_fast(float x) {
  return reciprocal_fast(1.0f + exp2_fast(-x * kLog2e<float>));
}
__device__ __forceinline__ double sigmoid_fast(double x) {
  return math::sigmoid(x);
}
template <typename C>
__device__ __forceinline__ C silu_fast(C z) {
  return z * sigmoid_fast(z);
}

// ---- rows of states ----------------------------------------------------------------------------

// Both kernels give each (batch, channel) row 4 lanes of 4 states each (state groups g = 0..3),
// and a block of 128 threads 32 rows of one batch, 8 rows per warp. block_rows() says which lanes.
constexpr int kMaxStates = static_cast<int>(kMaxScanState);  // 16
constexpr int kGroups = 4;                                   // threads per row
constexpr int kStates = kMaxStates / kGroups;                // per thread
constexpr int kRows = kThreads / kGroups;                    // per block
constexpr int kRowsPerWarp = 32 / kGroups;                   // 8
// Row stride of per-(row, step) arrays in shared memory: rows 4 banks apart, so that the 16-byte
// loads of a quarter warp (2 rows) hit different banks.
constexpr int kPad = kChunkLen + 4;

// K values of C from / to 16-byte aligned shared memory, as 16-byte accesses.
template <int K, typename C>
__device__ __forceinline__ void load_shared(const C* p, C (&out)[K]) {
  static_assert(K * sizeof(C) % 16 == 0, "whole 16-byte vectors");
#pragma unroll
  for (int v = 0; v < static_cast<int>(K * sizeof(C) / 16); ++v) {
    const uint4 raw = reinterpret_cast<const uint4*>(p)[v];
    memcpy(out + v * (16 / sizeof(C)), &raw, sizeof(raw));
  }
}
template <int K, typename C>
__device__ __forceinline__ void store_shared(C* p, const C (&in)[K]) {
  static_assert(K * sizeof(C) % 16 == 0, "whole 16-byte vectors");
#pragma unroll
  for (int v = 0; v < static_cast<int>(K * sizeof(C) / 16); ++v) {
    uint4 raw;
    memcpy(&raw, in + v * (16 / sizeof(C)), sizeof(raw));
    reinterpret_cast<uint4*>(p)[v] = raw;
  }
}

// The lane distance between the lanes of a row whose state groups differ in `bit` (block_rows()).
constexpr int group_lane_distance(int bit) {
  return bit == 1 ? 1 : 16;
}

// Sums v over the 4 lanes of a row: the lane of state group g ends with the sums of values
// g * K/4 .. + K/4 in v[0 .. K/4). A reduce-scatter: each round keeps half of the values and adds
// the partner lane's copy of them.
template <int K, typename C>
__device__ __forceinline__ void sum_over_groups(C (&v)[K], int g) {
  static_assert(K % kGroups == 0, "K/4 values per lane");
  int len = K;
#pragma unroll
  for (int bit = kGroups / 2; bit >= 1; bit /= 2) {
    len /= 2;
    const bool upper = g & bit;
#pragma unroll
    for (int i = 0; i < K / 2; ++i) {
      if (i < len) {
        const C send = upper ? v[i] : v[i + len], keep = upper ? v[i + len] : v[i];
        v[i] = keep + __shfl_xor_sync(kFullMask, send, group_lane_distance(bit));
      }
    }
  }
}

// The rows of the block: 32 channels c0 .. of batch b; this thread's row j and state group g.
// Lane bit 0 is bit 0 of g, bits 1-3 are the row within the warp, bit 4 is bit 1 of g: lanes
// T and T ^ 1 hold one row (their loads of its per-step values dt, dt u have one address) and
// lanes T and T ^ 2 one state group (their loads of B_t, C_t have one address). Shared memory
// returns 128 bytes per cycle; a 16-byte load whose lanes pair on addresses like that can come
// back in two cycles instead of four (NVIDIA's rule for compute capability 7.x; on the H200 this
// layout ran 1.5 % faster at batch 8 and 8 % at batch 4, docs/benchmarks.md).
struct BlockRows {
  int64_t b, c0;
  int j, g;
  int64_t c, row;  // channel, and row b * channels + c
  bool valid;      // c < channels
  int live_rows;   // rows of the block inside the channels
};
__device__ inline BlockRows block_rows(int64_t channels) {
  BlockRows r;
  const int64_t blocks_per_batch = (channels + kRows - 1) / kRows;
  r.b = blockIdx.x / blocks_per_batch;
  r.c0 = (blockIdx.x % blocks_per_batch) * kRows;
  const int lane = static_cast<int>(threadIdx.x % 32);
  r.j = static_cast<int>(threadIdx.x / 32) * kRowsPerWarp + ((lane >> 1) & 7);
  r.g = (lane & 1) | ((lane >> 3) & 2);
  r.c = r.c0 + r.j;
  r.row = r.b * channels + r.c;
  r.valid = r.c < channels;
  r.live_rows = static_cast<int>(std::min<int64_t>(kRows, channels - r.c0));
  return r;
}

// The block of kChunkLen / 4 steps of a chunk that state group g's lane finishes (its outputs):
// g with its two bits swapped. The lanes of a quarter warp are rows j0 .. j0 + 3 in groups g and
// g ^ 1 (block_rows()); reading their blocks from a [row][kPad] array, whose rows lie 4 banks
// apart, they hit 8 different 16-byte bank quads (block g itself would put groups 0 and 1 of rows
// j and j + 2 on one).
constexpr int kOwnSteps = kChunkLen / kGroups;
__device__ __forceinline__ int own_block(int g) {
  return ((g & 1) << 1) | (g >> 1);
}

// The per-chunk conversions (forward and backward) give thread x step x % kChunkLen of the
// kConvertRows rows convert_row(0) ..: rows x / kChunkLen, x / kChunkLen + 4, ...
static_assert(kThreads % kChunkLen == 0, "a fixed step per thread");
constexpr int kConvertRowsApart = kThreads / kChunkLen;
constexpr int kConvertRows = kRows / kConvertRowsApart;
__device__ __forceinline__ int convert_row(int k) {
  return static_cast<int>(threadIdx.x / kChunkLen) + k * kConvertRowsApart;
}

// Sums over the block's rows (the backward's dB and dC, the read-out's dC): each lane stores its
// 4 states' values of a step into the step's row of an exchange area, kRows x 16 values (padded by
// 16), where row j keeps state n at exchange_slot(j, n), so that the 16-byte stores of a quarter
// warp (rows j0 .. j0 + 3 in two state groups: block_rows()) fill 8 distinct bank quads; after a
// barrier, a thread adds one state of one step over the rows.
constexpr int kExchangeStride = kRows * kMaxStates + kMaxStates;
__device__ __forceinline__ int exchange_slot(int j, int n) {
  return j * kMaxStates + (n ^ ((j & 2) * 4));
}
template <typename C>
__device__ __forceinline__ C sum_exchange_rows(const C* step_values, int n) {
  C total = C(0);
#pragma unroll 8
  for (int r = 0; r < kRows; ++r) total += step_values[exchange_slot(r, n)];
  return total;
}

// D (unless D is null) and the delta bias of the block's rows into shared memory (0 past the
// channels or when absent).
template <typename T, typename C>
__device__ void load_row_constants(const ScanArgs<T>& a, int64_t c0, C* D, C* bias) {
  for (int i = threadIdx.x; i < kRows; i += kThreads) {
    const bool ok = c0 + i < a.channels;
    if (D) D[i] = ok && a.D ? to_compute(a.D[c0 + i]) : C(0);
    bias[i] = ok && a.bias ? to_compute(a.bias[c0 + i]) : C(0);
  }
}

// A2[q] = A[c, n] log2(e) for this thread's states n = g * 4 + q (0 past N or the channels), so
// that exp(dt A) = 2^(dt A2).
template <typename T, typename C>
__device__ __forceinline__ void load_A2(const ScanArgs<T>& a, const BlockRows& r,
                                        C (&A2)[kStates]) {
#pragma unroll
  for (int q = 0; q < kStates; ++q) {
    const int n = r.g * kStates + q;
    A2[q] = r.valid && n < a.N ? to_compute(a.A[r.c * a.N + n]) * kLog2e<C> : C(0);
  }
}

// ---- staging a chunk in shared memory -----------------------------------------------------------

// The most deeper read-outs (ScanReader) one backward launch joins to a scan's own gradient.
constexpr int kMaxReaders = 4;

// The block's operands of one chunk, copied to shared memory (as stored, T) with cp.async while
// the previous chunk is computed: rows of kChunkLen steps, first the per-state arrays, N rows each
// (B[b, n], C[b, n], then the readers' C in the backward), then the per-channel arrays, kRows rows
// each of the block's channels c0 .. (u, delta, and grad_y, z, the readers' gradients in the
// backward); the backward also stages the entry states of the chunk.
// (Its arrays are only indexed by constants or through state_at(), which keeps them in registers.)
template <typename T>
struct StagedArrays {
  const T* state[2 + kMaxReaders];
  int states;
  const T* channel[4 + kMaxReaders];
  int channels;
  __device__ const T* state_at(int p) const {
    const T* chosen = state[0];
#pragma unroll
    for (int i = 1; i < 2 + kMaxReaders; ++i) chosen = p == i ? state[i] : chosen;
    return chosen;
  }
};

// B and C rows are one 16-byte vector longer than a chunk: the transpose below reads a column of
// them (one step of 16 rows), which at a row stride of 64 bytes (bf16) would fall into two banks,
// 8 rows in each; padded, rows n and n + 8 share one (bf16; f32's stride is 144 bytes).
template <typename T>
constexpr int kStagedBCStride = kChunkLen + 16 / static_cast<int>(sizeof(T));

template <typename T>
__host__ __device__ constexpr int64_t staged_elements(int64_t N, int states, int channels) {
  return states * N * kStagedBCStride<T> + channels * kRows * kChunkLen;
}

// Per-state array p (N rows of kStagedBCStride) and per-channel array p (kRows rows of kChunkLen
// steps) of a chunk staged with `states` per-state arrays.
template <typename T>
__device__ __forceinline__ const T* staged_state(const T* staged, int N, int p) {
  return staged + p * N * kStagedBCStride<T>;
}
template <typename T>
__device__ __forceinline__ const T* staged_channel(const T* staged, int N, int states, int p) {
  return staged + states * N * kStagedBCStride<T> + p * kRows * kChunkLen;
}

// The states entering a chunk, staged [n][kEntryStride]: with two columns of padding, the 4 lanes
// of a row (state groups 4 states apart) read 4 different banks.
constexpr int kEntryStride = kRows + 2;

// B and C of a staged chunk ([n][step], T; per-state arrays 0 and 1) transposed into f32
// [step][16] (0 past N), so that a thread reads its 4 values of B_t or C_t with one 16-byte load
// shared by every row of a warp. All loads come before the stores, which the compiler could not
// move them past.
template <typename T, typename C>
__device__ void transpose_B_C(const T* staged, int N, C* B, C* C_) {
  static_assert(kThreads % kMaxStates == 0, "a fixed state per thread");
  constexpr int kStepsApart = kThreads / kMaxStates, kSteps = kChunkLen / kStepsApart;
  const int n = threadIdx.x % kMaxStates, first = threadIdx.x / kMaxStates;
  C Bv[kSteps], Cv[kSteps];
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    const int st = first + k * kStepsApart;
    Bv[k] = n < N ? to_compute(staged[n * kStagedBCStride<T> + st]) : C(0);
    Cv[k] = n < N ? to_compute(staged[(N + n) * kStagedBCStride<T> + st]) : C(0);
  }
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    const int st = first + k * kStepsApart;
    B[st * kMaxStates + n] = Bv[k];
    C_[st * kMaxStates + n] = Cv[k];
  }
}

// One staged per-state array ([n][step], T) transposed into f32 [step][16], as transpose_B_C.
template <typename T, typename C>
__device__ void transpose_state_array(const T* rows, int N, C* out) {
  constexpr int kStepsApart = kThreads / kMaxStates, kSteps = kChunkLen / kStepsApart;
  const int n = threadIdx.x % kMaxStates, first = threadIdx.x / kMaxStates;
  C v[kSteps];
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    v[k] = n < N ? to_compute(rows[n * kStagedBCStride<T> + first + k * kStepsApart]) : C(0);
  }
#pragma unroll
  for (int k = 0; k < kSteps; ++k) out[(first + k * kStepsApart) * kMaxStates + n] = v[k];
}

// One 16-byte vector of a staged row: src[t .. t + 16 bytes) to dst, with cp.async when it lies
// whole inside [0, L) and `vec` (rows 16-byte aligned), else element by element with plain stores
// (zeros past L, or everywhere when !ok).
template <typename T>
__device__ __forceinline__ void stage_vector(T* dst, const T* src, int64_t t, int64_t L, bool ok,
                                             bool vec) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  if (ok && vec && t + kPerVec <= L) {
    __pipeline_memcpy_async(dst, src + t, 16);
  } else {
#pragma unroll
    for (int k = 0; k < kPerVec; ++k) dst[k] = ok && t + k < L ? src[t + k] : from_compute<T>(0.0f);
  }
}

// Issues the copies of chunk [t0, t0 + kChunkLen) of batch b into `dst` and commits them as one
// cp.async group. A thread copies the same vector of the same channel row from each channel array,
// so it finds the row's offset once. With entry_src: also entry_src[n * rows + row0 + j] (the
// states entering the chunk of the block's rows) into entry_dst[n * kEntryStride + j].
template <typename T, typename C>
__device__ void stage_chunk(T* dst, const ScanArgs<T>& a, const StagedArrays<T>& arrays, int64_t b,
                            int64_t c0, int64_t t0, bool vec, const C* entry_src, C* entry_dst) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  constexpr int kVecs = kChunkLen / kPerVec;
  const int N = static_cast<int>(a.N);
  const int64_t L = a.length;
  for (int i = threadIdx.x; i < arrays.states * N * kVecs; i += blockDim.x) {
    const int row = i / kVecs, v = i % kVecs;  // row n of per-state array row / N
    const T* src = arrays.state_at(row / N) + (b * N + row % N) * L;
    stage_vector(dst + row * kStagedBCStride<T> + v * kPerVec, src, t0 + v * kPerVec, L, true, vec);
  }
  T* channel_dst = dst + arrays.states * N * kStagedBCStride<T>;
  for (int i = threadIdx.x; i < kRows * kVecs; i += blockDim.x) {
    const int j = i / kVecs, v = i % kVecs;
    const bool ok = c0 + j < a.channels;
    const int64_t offset = (b * a.channels + c0 + j) * L, t = t0 + v * kPerVec;
#pragma unroll
    for (int p = 0; p < 4 + kMaxReaders; ++p) {
      if (p < arrays.channels) {
        stage_vector(channel_dst + (p * kRows + j) * kChunkLen + v * kPerVec,
                     arrays.channel[p] + offset, t, L, ok, vec);
      }
    }
  }
  if (entry_src) {
    const int64_t rows_total = a.batch * a.channels, row0 = b * a.channels + c0;
    for (int i = threadIdx.x; i < N * kRows; i += blockDim.x) {
      const int n = i / kRows, j = i % kRows;
      C* to = entry_dst + n * kEntryStride + j;
      if (c0 + j < a.channels) {
        __pipeline_memcpy_async(to, entry_src + n * rows_total + row0 + j, sizeof(C));
      } else {
        *to = C(0);
      }
    }
  }
  __pipeline_commit();
}

// ---- launches -----------------------------------------------------------------------------------

template <typename S>
using state_t = compute_t<S>;  // f32 for bf16 and f32, f64 for f64

template <typename S>
state_t<S>* state_data(const Tensor& t) {
  return t.defined() ? t.data<state_t<S>>() : nullptr;
}

// Blocks of kRows channels of one batch each.
inline unsigned row_blocks(const ScanInputs& in, int64_t rows_per_block) {
  const int64_t groups = (in.u.size(1) + rows_per_block - 1) / rows_per_block;
  const int64_t blocks = in.u.size(0) * groups;
  DSSM_CHECK(blocks < (int64_t{1} << 31), "selective_scan", "too many (batch, channel) rows: {}",
             in.u.size(0) * in.u.size(1));
  return static_cast<unsigned>(blocks);
}

// 16-byte vector access is possible when every row starts 16-byte aligned.
inline bool vector_access(const ScanInputs& in, std::initializer_list<Tensor> outputs) {
  const int64_t per_vec = 16 / dtype_size(in.u.dtype());
  if (in.u.size(2) % per_vec != 0) return false;
  for (const Tensor& t : {in.u, in.delta, in.B, in.C, in.z}) {
    if (t.defined() && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) return false;
  }
  for (const Tensor& t : outputs) {
    if (t.defined() && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) return false;
  }
  return true;
}

// Lets `kernel` take `smem` bytes of dynamic shared memory, raising its limit past 48 KB and
// asking for the largest shared-memory share of the SM's L1 so that as many blocks fit as the
// registers allow.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t smem) {
  if (smem > 48 * 1024) {
    DSSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)));
    DSSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         cudaSharedmemCarveoutMaxShared));
  }
}

// Up to kMaxScanJobs scans of one launch (DenseMamba's cross-layer read-outs): blockIdx.y picks
// one.
template <typename Job>
struct JobTable {
  Job job[kMaxScanJobs];
};

// Launches the scans `jobs` (all of the same shape): a single one through `one(job, vec)`, more
// through `many(table, vec)` with a grid row per scan, in groups of kMaxScanJobs. (A single scan
// read through the table ran 3-7 % slower.)
template <typename Job, typename One, typename Many>
void launch_jobs(One one, Many many, const std::vector<Job>& jobs, unsigned blocks, size_t smem,
                 bool vec, const char* name) {
  allow_shared_memory(one, smem);
  allow_shared_memory(many, smem);
  for (size_t first = 0; first < jobs.size(); first += kMaxScanJobs) {
    const size_t count = std::min(jobs.size() - first, static_cast<size_t>(kMaxScanJobs));
    if (count == 1) {
      one<<<blocks, kThreads, smem, current_stream()>>>(jobs[first], vec);
    } else {
      JobTable<Job> table{};
      std::copy_n(jobs.begin() + static_cast<std::ptrdiff_t>(first), count, table.job);
      const dim3 grid(blocks, static_cast<unsigned>(count));
      many<<<grid, kThreads, smem, current_stream()>>>(table, vec);
    }
    DSSM_CUDA_CHECK_LAUNCH(name);
  }
}

}  // namespace dssm::cuda::scan_kernels
