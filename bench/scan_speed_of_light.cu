// scan_speed_of_light: how fast could any selective scan of our algorithm be on this GPU?
//
// The scan's forward + backward at Mamba-360M's shapes (batch 8, length 2048, channels 2048,
// N 16) has a bytes floor of 0.247 ms at 3.0 TB/s; issue #4 asks for 2x that, 0.495 ms. These
// kernels time only the arithmetic that a scan which recomputes its states in backward (the
// issue's design: docs/ops-ssm.md) cannot avoid per element (b, c, t, n), on the same grid as
// ours (4 lanes of 4 states per (b, c) row, 32 rows per block, chunks of 32 steps; and 8 lanes of
// 2 states, twice the warps for the same work):
//
//   forward         a = 2^(dt A'), h = a h + (dt u) B, y += C h                 1 ex2, 4 f32
//   backward  (i)   the states entering each sub-chunk of 4 steps, again         1 ex2, 3 f32
//             (ii)  a_t, h_t of the sub-chunk into registers                     1 ex2, 3 f32
//             (iii) reverse: G = C gy + Q, aG = a G, P = aG h_{t-1}, Q = aG,          9 f32
//                   and the six sums of P, G and h (dA, ddt's two, y, dB, dC)
//
// and nothing else: no global loads (dt, dt u and gy come from a small shared table, B, C and
// the entry states from registers), no sums across lanes or rows, no outputs but one value per
// thread. A second backward drops (i), as if the forward had stored the state entering every
// sub-chunk (8x the entry states it stores now, whose bytes are not counted here). What
// these kernels take is a lower bound for a real kernel of this design: ours add the staging,
// conversions (softplus, silu), the sums over lanes and rows and the stores.
//
//   scan_speed_of_light [--batch B] [--iters N]
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include "bench/scan_floor.hpp"
#include "cuda/selective_scan_common.cuh"
#include "tensor/error.hpp"

namespace {

constexpr int kThreads = 128;  // per block
constexpr int kMaxRows = 32;   // rows per block at 4 lanes per row
constexpr int kLanesMax = 8;   // the most threads per row timed
constexpr int kChunk = 32;     // steps per chunk
constexpr int kSub = 4;        // steps per sub-chunk
constexpr int kSubs = kChunk / kSub;
constexpr int64_t kLength = 2048, kChannels = 2048, kN = 16;

using dssm::cuda::scan_kernels::exp2_fast;  // 2^x on the SFU, as our kernels compute it

__device__ __forceinline__ void unpack(const float4& v, float (&x)[kSub]) {
  x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
}

// Per (row, step of a chunk) values: dt, dt u and gy (table_row() picks the row a chunk reads);
// each thread reads kSub steps with one 16-byte load. The backward's entry pass (i) reads its own
// copy of dt and dt u, so that the compiler cannot reuse its a_t in (ii), which a real kernel has
// no registers to keep.
template <int kRows>
struct RowTable {
  float4 dt[kRows][kSubs], dtu[kRows][kSubs], gy[kRows][kSubs];
  float4 entry_dt[kRows][kSubs], entry_dtu[kRows][kSubs];
  // dt and dt u of sub-chunk sc of row r: the entry pass's copy, or the other passes'.
  __device__ __forceinline__ void load(int r, int sc, bool entry_pass, float (&dt)[kSub],
                                       float (&dtu)[kSub]) const {
    unpack(entry_pass ? entry_dt[r][sc] : this->dt[r][sc], dt);
    unpack(entry_pass ? entry_dtu[r][sc] : this->dtu[r][sc], dtu);
  }
};

// table: [3][kRows][kSubs] float4 (dt, dt u, gy).
template <int kRows>
__device__ void load_table(RowTable<kRows>& s, const float4* table) {
  constexpr int kValues = kRows * kSubs;
  for (int i = threadIdx.x; i < kValues; i += kThreads) {
    const int r = i / kSubs, sc = i % kSubs;
    s.dt[r][sc] = s.entry_dt[r][sc] = table[i];
    s.dtu[r][sc] = s.entry_dtu[r][sc] = table[kValues + i];
    s.gy[r][sc] = table[2 * kValues + i];
  }
  __syncthreads();
}

// The table row a thread reads for the chunk at t0: another one each chunk, so that the compiler
// cannot keep the table in registers across chunks (a real kernel reads new values).
template <int kRows>
__device__ __forceinline__ int table_row(int row, int64_t t0) {
  return (row + static_cast<int>(t0 / kChunk)) % kRows;
}

// A thread of kLanes per (b, c) row: its row in the block and its kStates = N / kLanes states'
// constants A' = A log2(e) < 0, B and C (as if B_t, C_t were free to read).
template <int kLanes>
struct Thread {
  static constexpr int kStates = static_cast<int>(kN) / kLanes, kRows = kThreads / kLanes;
  int row;
  float A2[kStates], B[kStates], C[kStates];
  __device__ Thread() : row(static_cast<int>(threadIdx.x) / kLanes) {
    const int q0 = static_cast<int>(threadIdx.x) % kLanes * kStates;
#pragma unroll
    for (int q = 0; q < kStates; ++q) {
      A2[q] = -0.5f - 0.25f * static_cast<float>(q0 + q);
      B[q] = 0.01f * static_cast<float>(q0 + q + 1);
      C[q] = 0.02f * static_cast<float>(kN - q0 - q);
    }
  }
  // One step of the recurrence for the thread's states: h = 2^(dt A') h + (dt u) B.
  __device__ __forceinline__ void step(float dt, float dtu, float (&h)[kStates]) const {
#pragma unroll
    for (int q = 0; q < kStates; ++q) h[q] = fmaf(exp2_fast(dt * A2[q]), h[q], dtu * B[q]);
  }
};

template <int kLanes>
__global__ void __launch_bounds__(kThreads)
    forward_arithmetic(const float4* table, float* out, int64_t length) {
  using T = Thread<kLanes>;
  __shared__ RowTable<T::kRows> s;
  load_table(s, table);
  const T th;
  float h[T::kStates] = {}, y[T::kStates] = {};
  for (int64_t t0 = 0; t0 < length; t0 += kChunk) {
    const int r = table_row<T::kRows>(th.row, t0);
#pragma unroll
    for (int sc = 0; sc < kSubs; ++sc) {
      float dt[kSub], dtu[kSub];
      s.load(r, sc, false, dt, dtu);
#pragma unroll
      for (int i = 0; i < kSub; ++i) {
        th.step(dt[i], dtu[i], h);
#pragma unroll
        for (int q = 0; q < T::kStates; ++q) y[q] = fmaf(th.C[q], h[q], y[q]);
      }
    }
  }
  float total = 0.0f;
#pragma unroll
  for (int q = 0; q < T::kStates; ++q) total += y[q] + h[q];
  out[blockIdx.x * kThreads + threadIdx.x] = total;
}

// kMinBlocks: blocks per SM the registers must allow (4: at most 128, as our backward's 4-blocks
// build; 1: free).
template <int kLanes, bool kEntryPass, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    backward_arithmetic(const float4* table, float* out, int64_t length) {
  using T = Thread<kLanes>;
  constexpr int kStates = T::kStates;
  __shared__ RowTable<T::kRows> s;
  load_table(s, table);
  const T th;
  float entry[kStates], Q[kStates], dA[kStates] = {}, pd[kStates] = {}, pg[kStates] = {},
                                    py[kStates] = {}, dB[kStates] = {}, dC[kStates] = {};
#pragma unroll
  for (int q = 0; q < kStates; ++q) entry[q] = 0.1f * th.B[q], Q[q] = 0.01f * th.C[q];
  for (int64_t t0 = length - kChunk; t0 >= 0; t0 -= kChunk) {
    const int r = table_row<T::kRows>(th.row, t0);
    // The state entering each sub-chunk: (i) recomputes it from the chunk's; without (i) it is
    // given (as if stored by the forward: here the chunk's).
    float h_sub[kSubs][kStates], h[kStates];
#pragma unroll
    for (int q = 0; q < kStates; ++q) h[q] = entry[q];
#pragma unroll
    for (int sc = 0; sc < kSubs; ++sc) {
#pragma unroll
      for (int q = 0; q < kStates; ++q) h_sub[sc][q] = h[q];
      if constexpr (kEntryPass) {
        float dt[kSub], dtu[kSub];
        s.load(r, sc, true, dt, dtu);
#pragma unroll
        for (int i = 0; i < kSub; ++i) th.step(dt[i], dtu[i], h);
      }
    }
#pragma unroll
    for (int sc = kSubs - 1; sc >= 0; --sc) {
      float dt[kSub], dtu[kSub], gy[kSub], a[kSub][kStates], h[kSub][kStates];
      s.load(r, sc, false, dt, dtu);
      unpack(s.gy[r][sc], gy);
#pragma unroll
      for (int i = 0; i < kSub; ++i) {  // (ii) a_t and h_t
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          a[i][q] = exp2_fast(dt[i] * th.A2[q]);
          h[i][q] = fmaf(a[i][q], i > 0 ? h[i - 1][q] : h_sub[sc][q], dtu[i] * th.B[q]);
        }
      }
#pragma unroll
      for (int i = kSub - 1; i >= 0; --i) {  // (iii) the reverse walk
#pragma unroll
        for (int q = 0; q < kStates; ++q) {
          const float G = fmaf(th.C[q], gy[i], Q[q]);
          const float aG = a[i][q] * G;
          const float P = aG * (i > 0 ? h[i - 1][q] : h_sub[sc][q]);
          Q[q] = aG;
          dA[q] = fmaf(dt[i], P, dA[q]);
          pd[q] = fmaf(th.A2[q], P, pd[q]);
          pg[q] = fmaf(G, th.B[q], pg[q]);
          py[q] = fmaf(th.C[q], h[i][q], py[q]);
          dB[q] = fmaf(G, dtu[i], dB[q]);
          dC[q] = fmaf(gy[i], h[i][q], dC[q]);
        }
      }
    }
  }
  float total = 0.0f;
#pragma unroll
  for (int q = 0; q < kStates; ++q) total += Q[q] + dA[q] + pd[q] + pg[q] + py[q] + dB[q] + dC[q];
  out[blockIdx.x * kThreads + threadIdx.x] = total;
}

// Median of `iters` timed launches (after 3 untimed), in milliseconds.
template <typename Launch>
double median_ms(int iters, Launch launch) {
  cudaEvent_t start, stop;
  DSSM_CUDA_CHECK(cudaEventCreate(&start));
  DSSM_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    DSSM_CUDA_CHECK(cudaEventRecord(start));
    launch();
    DSSM_CUDA_CHECK(cudaEventRecord(stop));
    DSSM_CUDA_CHECK(cudaEventSynchronize(stop));
    float m = 0.0f;
    DSSM_CUDA_CHECK(cudaEventElapsedTime(&m, start, stop));
    ms.push_back(m);
  }
  DSSM_CUDA_CHECK_LAUNCH("scan_speed_of_light's kernels");
  DSSM_CUDA_CHECK(cudaEventDestroy(start));
  DSSM_CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(ms.begin(), ms.begin() + iters / 2, ms.end());
  return ms[static_cast<size_t>(iters / 2)];
}

int64_t flag(int argc, char** argv, const std::string& name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (name != argv[i]) continue;
    const std::string text = argv[i + 1];
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    DSSM_CHECK(error == std::errc() && end == text.data() + text.size() && !text.empty(),
               "scan_speed_of_light", "{} takes an integer, not '{}'", name, text);
    return value;
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  for (int i = 1; i < argc; i += 2) {
    const std::string name = argv[i];
    DSSM_CHECK((name == "--batch" || name == "--iters") && i + 1 < argc, "scan_speed_of_light",
               "unknown option or missing value: {} (options: --batch B, --iters N)", name);
  }
  const int64_t batch = flag(argc, argv, "--batch", 8), iters = flag(argc, argv, "--iters", 20);
  DSSM_CHECK(batch >= 1 && batch <= 4096 && iters >= 1, "scan_speed_of_light",
             "--batch must be in [1, 4096] and --iters >= 1, not {} and {}", batch, iters);
  const int64_t rows = batch * kChannels;

  std::vector<float> host(3 * kMaxRows * kChunk);  // dt in (0.001, 0.1], dt u, gy: fixed values
  for (size_t i = 0; i < host.size(); ++i) {
    host[i] = 0.001f + 0.099f * static_cast<float>((i * 7919) % 1000) / 1000.0f;
  }
  float4* table = nullptr;
  float* out = nullptr;
  DSSM_CUDA_CHECK(cudaMalloc(&table, host.size() * sizeof(float)));
  DSSM_CUDA_CHECK(cudaMalloc(&out, rows * kLanesMax * sizeof(float)));
  DSSM_CUDA_CHECK(
      cudaMemcpy(table, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  const int n = static_cast<int>(iters);
  auto forward_ms = [&]<int kLanes>() {
    const auto blocks = static_cast<unsigned>(rows * kLanes / kThreads);
    return median_ms(
        n, [&] { forward_arithmetic<kLanes><<<blocks, kThreads>>>(table, out, kLength); });
  };
  // A backward in the faster of two register budgets: free, or room for kMinBlocks blocks.
  auto backward_ms = [&]<int kLanes, bool kEntryPass, int kMinBlocks>() {
    const auto blocks = static_cast<unsigned>(rows * kLanes / kThreads);
    auto run = [&]<int kMin>() {
      return median_ms(n, [&] {
        backward_arithmetic<kLanes, kEntryPass, kMin><<<blocks, kThreads>>>(table, out, kLength);
      });
    };
    return std::min(run.template operator()<1>(), run.template operator()<kMinBlocks>());
  };
  const double fwd4 = forward_ms.template operator()<4>(),
               fwd8 = forward_ms.template operator()<8>();
  const double entry4 = backward_ms.template operator()<4, true, 4>(),
               entry8 = backward_ms.template operator()<8, true, 8>(),
               no_entry4 = backward_ms.template operator()<4, false, 4>(),
               no_entry8 = backward_ms.template operator()<8, false, 8>();
  DSSM_CUDA_CHECK(cudaFree(table));
  DSSM_CUDA_CHECK(cudaFree(out));

  // The bytes floor of ssm_bench's scan in bf16 (dB, dC in f32), at 3.0 TB/s.
  const double tokens = static_cast<double>(batch * kLength), D = kChannels, N = kN;
  const dssm::bench::ScanBytes bytes = dssm::bench::scan_bytes(tokens, D, N, 2, 4);
  const double floor_ms = (bytes.forward + bytes.backward) / 3.0e12 * 1e3;
  cudaDeviceProp prop{};
  DSSM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  fmt::print("{}, batch {}, length {}, channels {}, N {}: {:.0f} M elements (b, c, t, n)\n",
             prop.name, batch, kLength, kChannels, kN, tokens * D * N / 1e6);
  fmt::print("bytes floor of forward + backward: {:.3f} ms; issue #4's goal (2x): {:.3f} ms\n",
             floor_ms, 2 * floor_ms);
  fmt::print("{:<40} {:>15} {:>15} {:>12}\n", "arithmetic only (lower bounds)", "4 lanes x 4, ms",
             "8 lanes x 2, ms", "best x floor");
  // best: the faster layout of each kernel (of the forward and of the backward, for the sums).
  auto row = [&](const char* what, double four, double eight, double best) {
    fmt::print("{:<40} {:15.3f} {:15.3f} {:11.2f}x\n", what, four, eight, best / floor_ms);
  };
  const double fwd = std::min(fwd4, fwd8), entry = std::min(entry4, entry8),
               no_entry = std::min(no_entry4, no_entry8);
  row("forward (1 ex2 per element)", fwd4, fwd8, fwd);
  row("backward with (i): 2 ex2, as ours", entry4, entry8, entry);
  row("backward without (i): 1 ex2", no_entry4, no_entry8, no_entry);
  row("forward + backward, 3 ex2 (as ours)", fwd4 + entry4, fwd8 + entry8, fwd + entry);
  row("forward + backward, 2 ex2", fwd4 + no_entry4, fwd8 + no_entry8, fwd + no_entry);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
