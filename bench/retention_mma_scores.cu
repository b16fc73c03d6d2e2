// A measured alternative, not used by the op: the chunkwise retention's masked intra-chunk
// product in one tensor-core kernel,
//
//     out_j = (A_j B_j^T) ⊙ M_j,     M_j[i, i'] = r_{jC+i} gamma^(i-i') for i' <= i, else 0
//
// (docs/ops-retention.md: S_j = Q_j K_j^T ⊙ M_j in forward, dA_j = (G_j V_j^T) ⊙ M_j in backward).
// The op computes the whole C x C product with cuBLASLt and then retention_chunk_mask reads and
// rewrites it; here each block computes one 128 x 128 tile of the product with bf16 MMA (WMMA
// fragments, i.e. mma.sync; f32 accumulation) and masks its accumulators before the only write.
// Tiles above the diagonal are written as zeros without a product (10 of 16 tiles computed at C
// = 512). Issue #4 asks which of the two is faster: bench/retention_bench.cpp times both on the
// same operands (docs/benchmarks.md, "Retention (GPU)": cuBLASLt's path is, by 1.3-1.9x).
//
// A block is 8 warps (2 x 4), each accumulating 64 x 32 of the tile in 4 x 2 fragments of 16 x
// 16; the contraction runs in slices of 32, three slices in flight (cp.async into shared memory).
#include <cuda_pipeline.h>
#include <mma.h>

#include "bench/retention_mma_scores.hpp"
#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::bench {
namespace {

using namespace nvcuda;

constexpr int kTile = 128;                     // output tile kTile x kTile per block
constexpr int kSlice = 32;                     // contraction slice per pipeline stage
constexpr int kStages = 3;                     // slices in flight
constexpr int kPitch = kSlice + 8;             // shared row pitch: 80 bytes, conflict-free reads
constexpr int kWarpRows = 64, kWarpCols = 32;  // each warp's part of the tile
constexpr int kWarps = (kTile / kWarpRows) * (kTile / kWarpCols);
constexpr int kThreads = 32 * kWarps;
constexpr int kFragRows = kWarpRows / 16, kFragCols = kWarpCols / 16;
constexpr int kStageElements = 2 * kTile * kPitch;  // the slices of A and B
constexpr size_t kSharedBytes = kStages * kStageElements * sizeof(__nv_bfloat16);
static_assert(kWarps * 16 * 16 * sizeof(float) <= kSharedBytes, "epilogue staging fits");

struct alignas(16) Pack8 {
  __nv_bfloat16 v[8];
};

// Copies rows [0, kTile) x columns [k0, k0 + kSlice) of a row-major [*, K] matrix into shared
// memory (pitch kPitch), 16 bytes per asynchronous copy.
__device__ void load_slice(__nv_bfloat16* shared, const __nv_bfloat16* rows, int K, int k0) {
  constexpr int kChunksPerRow = kSlice / 8;
  for (int c = threadIdx.x; c < kTile * kChunksPerRow; c += kThreads) {
    const int row = c / kChunksPerRow, col = c % kChunksPerRow * 8;
    __pipeline_memcpy_async(shared + row * kPitch + col,
                            rows + static_cast<int64_t>(row) * K + k0 + col, 16);
  }
}

__global__ void __launch_bounds__(kThreads)
    masked_scores_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ a,
                         const __nv_bfloat16* __restrict__ b, const float* __restrict__ row_scale,
                         const float* __restrict__ powers, int heads, int chunks, int C, int K) {
  const int tile_col = blockIdx.x, tile_row = blockIdx.y;
  const int64_t z = blockIdx.z;  // (batch, head, chunk)
  __nv_bfloat16* out_chunk = out + z * C * C;

  if (tile_col > tile_row) {  // above the diagonal: zeros, no product
    Pack8 zeros;
    for (int v = 0; v < 8; ++v) zeros.v[v] = __float2bfloat16(0.0f);
    for (int c = threadIdx.x; c < kTile * kTile / 8; c += kThreads) {
      const int row = tile_row * kTile + c / (kTile / 8),
                col = tile_col * kTile + c % (kTile / 8) * 8;
      *reinterpret_cast<Pack8*>(out_chunk + static_cast<int64_t>(row) * C + col) = zeros;
    }
    return;
  }

  extern __shared__ __align__(128) unsigned char shared_bytes[];
  auto* shared = reinterpret_cast<__nv_bfloat16*>(shared_bytes);
  const __nv_bfloat16* a_rows = a + (z * C + tile_row * kTile) * K;
  const __nv_bfloat16* b_rows = b + (z * C + tile_col * kTile) * K;
  auto stage_a = [&](int slice) { return shared + slice % kStages * kStageElements; };
  auto stage_b = [&](int slice) { return stage_a(slice) + kTile * kPitch; };
  auto load = [&](int slice) {
    load_slice(stage_a(slice), a_rows, K, slice * kSlice);
    load_slice(stage_b(slice), b_rows, K, slice * kSlice);
  };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_row = warp / (kTile / kWarpCols) * kWarpRows;
  const int warp_col = warp % (kTile / kWarpCols) * kWarpCols;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFragRows][kFragCols];
  for (auto& row : acc)
    for (auto& f : row) wmma::fill_fragment(f, 0.0f);

  const int slices = K / kSlice;
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < slices) load(s);
    __pipeline_commit();
  }
  for (int s = 0; s < slices; ++s) {
    __pipeline_wait_prior(kStages - 2);  // slice s has landed (for this thread's copies)
    __syncthreads();                     // ... for every thread's; slice s - 1 is read by all
    if (s + kStages - 1 < slices) load(s + kStages - 1);  // into slice s - 1's stage
    __pipeline_commit();
    const __nv_bfloat16* as = stage_a(s);
    const __nv_bfloat16* bs = stage_b(s);
#pragma unroll
    for (int kk = 0; kk < kSlice; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[kFragRows];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[kFragCols];
#pragma unroll
      for (int i = 0; i < kFragRows; ++i)
        wmma::load_matrix_sync(fa[i], as + (warp_row + 16 * i) * kPitch + kk, kPitch);
#pragma unroll
      for (int j = 0; j < kFragCols; ++j)  // B^T's column n is B's row n
        wmma::load_matrix_sync(fb[j], bs + (warp_col + 16 * j) * kPitch + kk, kPitch);
#pragma unroll
      for (int i = 0; i < kFragRows; ++i)
#pragma unroll
        for (int j = 0; j < kFragCols; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }
  __pipeline_wait_prior(0);
  __syncthreads();  // the stages are free: each warp stages a fragment there in turn

  // Each fragment goes through shared memory; a lane then masks 8 consecutive columns of one
  // row and writes them as one 16-byte store.
  float* staging = reinterpret_cast<float*>(shared_bytes) + warp * 16 * 16;
  const int chunk = static_cast<int>(z % chunks), head = static_cast<int>(z / chunks % heads);
  const float* r = row_scale + (static_cast<int64_t>(head) * chunks + chunk) * C;
  const float* power = powers + static_cast<int64_t>(head) * C;
  const int lane_row = lane / 2, lane_col = lane % 2 * 8;
#pragma unroll
  for (int i = 0; i < kFragRows; ++i) {
#pragma unroll
    for (int j = 0; j < kFragCols; ++j) {
      wmma::store_matrix_sync(staging, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int row = tile_row * kTile + warp_row + 16 * i + lane_row;
      const int col = tile_col * kTile + warp_col + 16 * j + lane_col;
      const float scale = r[row];
      Pack8 p;
#pragma unroll
      for (int v = 0; v < 8; ++v) {
        const float x = staging[lane_row * 16 + lane_col + v];
        p.v[v] = __float2bfloat16(col + v <= row ? x * scale * power[row - col - v] : 0.0f);
      }
      *reinterpret_cast<Pack8*>(out_chunk + static_cast<int64_t>(row) * C + col) = p;
      __syncwarp();
    }
  }
}

bool aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
}

}  // namespace

bool mma_masked_scores_fit(const Tensor& a, const Tensor& b) {
  return a.is_cuda() && a.dtype() == DType::bf16 && b.dtype() == DType::bf16 && a.dim() >= 2 &&
         a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() &&
         a.size(-2) % kTile == 0 && a.size(-1) % kSlice == 0 && aligned16(a) && aligned16(b) &&
         a.numel() / (a.size(-2) * a.size(-1)) <= 65535;
}

void mma_masked_scores(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& row_scale,
                       const Tensor& powers, int64_t heads, int64_t chunks) {
  cuda::require_device(a.device().index);
  const int64_t C = a.size(-2), K = a.size(-1), batch = a.numel() / (C * K);
  if (!(mma_masked_scores_fit(a, b) && out.dtype() == DType::bf16 && out.is_contiguous() &&
        out.numel() == batch * C * C && aligned16(out) && row_scale.dtype() == DType::f32 &&
        powers.dtype() == DType::f32 && row_scale.numel() == heads * chunks * C &&
        powers.numel() == heads * C && batch % (heads * chunks) == 0))
    fail("mma_masked_scores",
         "expected contiguous bf16 a, b [..., C, K] with C a multiple of {} and K of {}, out [..., "
         "C, C], f32 tables [{}, {}] and [{}, {}]; got {}, {}, {}, {}, {}",
         kTile, kSlice, heads, chunks * C, heads, C, describe(a), describe(b), describe(out),
         describe(row_scale), describe(powers));
  if (batch == 0) return;
  static const bool shared_allowed = [] {
    DSSM_CUDA_CHECK(cudaFuncSetAttribute(masked_scores_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kSharedBytes)));
    return true;
  }();
  (void)shared_allowed;
  const dim3 grid(static_cast<unsigned>(C / kTile), static_cast<unsigned>(C / kTile),
                  static_cast<unsigned>(batch));
  masked_scores_kernel<<<grid, kThreads, kSharedBytes, cuda::current_stream()>>>(
      cuda::device_data<bf16>(out), cuda::device_data<bf16>(a), cuda::device_data<bf16>(b),
      static_cast<const float*>(row_scale.raw_data()), static_cast<const float*>(powers.raw_data()),
      static_cast<int>(heads), static_cast<int>(chunks), static_cast<int>(C), static_cast<int>(K));
  DSSM_CUDA_CHECK_LAUNCH("mma_masked_scores");
}

}  // namespace dssm::bench
