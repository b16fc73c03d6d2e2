// K consecutive elements of a row in global memory, loaded into or stored from registers in the
// compute type: as 16-byte vectors where the caller knows the row allows it (`vec`: the row
// 16-byte aligned and t a multiple of the vector width), else element by element. Only the
// elements inside [0, L) are touched; loads give 0 outside.
#pragma once

#include <cstring>

#include "cuda/common.cuh"

namespace dssm::cuda {

template <int K, typename T, typename C>
__device__ __forceinline__ void load_items(const T* base, int64_t t, int64_t L, bool vec,
                                           C (&out)[K]) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  static_assert(K % kPerVec == 0, "items must fill whole 16-byte vectors");
  if (vec && t >= 0 && t + K <= L) {
#pragma unroll
    for (int v = 0; v < K / kPerVec; ++v) {
      const uint4 raw = reinterpret_cast<const uint4*>(base + t)[v];
      T e[kPerVec];
      memcpy(e, &raw, sizeof(raw));
#pragma unroll
      for (int j = 0; j < kPerVec; ++j) out[v * kPerVec + j] = to_compute(e[j]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = t + k >= 0 && t + k < L ? to_compute(base[t + k]) : C(0);
  }
}

// Stores in[k] to base[t + k] for t + k in [0, L) (nothing when !ok).
template <int K, typename T, typename C>
__device__ __forceinline__ void store_items(T* base, int64_t t, int64_t L, bool ok, bool vec,
                                            const C (&in)[K]) {
  if (!ok) return;
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  static_assert(K % kPerVec == 0, "items must fill whole 16-byte vectors");
  if (vec && t >= 0 && t + K <= L) {
#pragma unroll
    for (int v = 0; v < K / kPerVec; ++v) {
      T e[kPerVec];
#pragma unroll
      for (int j = 0; j < kPerVec; ++j) e[j] = from_compute<T>(in[v * kPerVec + j]);
      uint4 raw;
      memcpy(&raw, e, sizeof(raw));
      reinterpret_cast<uint4*>(base + t)[v] = raw;
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (t + k >= 0 && t + k < L) base[t + k] = from_compute<T>(in[k]);
    }
  }
}

// Row tiles (the convolution's and the dense output's kernels): a block takes kTile steps of one
// (batch, channel) row, a thread kSteps consecutive steps of it. RowPiece is this thread's row
// (batch * channels + channel), its channel and its first step.
struct RowPiece {
  int64_t row, c, t;
};
template <int kTile, int kSteps>
__device__ inline RowPiece row_piece(int64_t channels, int64_t length) {
  const int64_t tiles = (length + kTile - 1) / kTile;
  const int64_t row = blockIdx.x / tiles;
  return {row, row % channels, (blockIdx.x % tiles) * kTile + threadIdx.x * int64_t{kSteps}};
}
// The blocks of such a grid over `rows` rows of `length` steps, for op `op`'s error message.
template <int kTile>
unsigned row_tile_blocks(int64_t rows, int64_t length, const char* op) {
  const int64_t blocks = rows * ((length + kTile - 1) / kTile);
  DSSM_CHECK(blocks < (int64_t{1} << 31), op, "too many (batch, channel) rows: {}", rows);
  return static_cast<unsigned>(blocks);
}

}  // namespace dssm::cuda
