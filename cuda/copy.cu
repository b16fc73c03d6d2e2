// copy_strided: dst[i] = convert(src[i]) for two tensors of one shape on one CUDA device, with any
// strides (views, broadcasts) and any pair of dtypes. Conversions follow the CPU's
// (tensor/copy.cpp): through the source's compute type, bf16 rounding to nearest even.
#include <algorithm>
#include <optional>
#include <type_traits>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::cuda {
namespace {

template <typename To, typename From>
__device__ __forceinline__ To convert(From value) {
  if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return convert<To>(__bfloat162float(value));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

// Both dense: element i to element i.
template <typename To, typename From>
__global__ void convert_dense(To* dst, const From* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = convert<To>(src[i]);
  }
}

// Element i (row-major over the shape) sits at dst_index.offset(i) / src_index.offset(i).
template <typename To, typename From>
__global__ void convert_strided(To* dst, StridedIndexer dst_index, const From* src,
                                StridedIndexer src_index, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[dst_index.offset(i)] = convert<To>(src[src_index.offset(i)]);
  }
}

// A transposing copy: dst has stride 1 along its last dimension and src's stride-1 dimension p is
// not its last one (the [B, T, D] <-> [B, D, T] copies around the selective scan, also into a
// slice of a wider tensor: split's and narrow's backward). Element by element, either the reads
// or the writes would be far apart; instead a block moves kTileSide x kTileSide tiles over
// (p, last) through shared memory: it reads a tile along p (coalesced in src) and writes it along
// the last dimension (coalesced in dst). The other dimensions ("outer") index whole tiles. A
// thread loads all of its values of a tile before it stores any (so that its loads are in flight
// together).
struct TransposePlan {
  int64_t P, Q;                         // sizes of dimension p and of the last dimension
  int64_t src_q, dst_p;                 // src's stride along the last dimension, dst's along p
  int64_t tiles_p, tiles_q, tiles;      // tiles along p, along the last dimension, in all
  StridedIndexer src_outer, dst_outer;  // offsets of an outer index (p and last at size 1)
};
// A block of 32 x 8 threads: thread (x, y) moves columns x, x + 32, ... of rows y, y + 8, ...
constexpr int kTileSide = 32, kTileRows = 8;
constexpr int kTileColsPerThread = kTileSide / 32, kTileRowsPerThread = kTileSide / kTileRows;

template <typename To, typename From>
__global__ void convert_transposed(To* dst, const From* src, TransposePlan plan) {
  using Wide = std::conditional_t<std::is_same_v<To, __nv_bfloat16>, float, To>;  // 4-byte banks
  __shared__ Wide tile[kTileSide][kTileSide + 1];  // [along last][along p], padded
  const int x = static_cast<int>(threadIdx.x), y = static_cast<int>(threadIdx.y);
  for (int64_t block = blockIdx.x; block < plan.tiles; block += gridDim.x) {
    const int64_t q0 = block % plan.tiles_q * kTileSide;
    const int64_t p0 = block / plan.tiles_q % plan.tiles_p * kTileSide;
    const int64_t outer = block / plan.tiles_q / plan.tiles_p;
    const From* from = src + plan.src_outer.offset(outer);
    To* to = dst + plan.dst_outer.offset(outer);
    Wide v[kTileRowsPerThread][kTileColsPerThread];
#pragma unroll
    for (int r = 0; r < kTileRowsPerThread; ++r) {
#pragma unroll
      for (int c = 0; c < kTileColsPerThread; ++c) {
        const int64_t p = p0 + x + c * 32, q = q0 + y + r * kTileRows;
        v[r][c] = p < plan.P && q < plan.Q ? convert<Wide>(convert<To>(from[p + q * plan.src_q]))
                                           : Wide(0);
      }
    }
#pragma unroll
    for (int r = 0; r < kTileRowsPerThread; ++r) {
#pragma unroll
      for (int c = 0; c < kTileColsPerThread; ++c) tile[y + r * kTileRows][x + c * 32] = v[r][c];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTileRowsPerThread; ++r) {
#pragma unroll
      for (int c = 0; c < kTileColsPerThread; ++c) {
        const int64_t p = p0 + y + r * kTileRows, q = q0 + x + c * 32;
        if (p < plan.P && q < plan.Q) {
          to[p * plan.dst_p + q] = convert<To>(tile[x + c * 32][y + r * kTileRows]);
        }
      }
    }
    __syncthreads();
  }
}

// The plan for copying src into dst by tiles of tile_side x tile_side, when dst has stride 1 along
// its last dimension and src's stride-1 dimension (of size > 1) is another; nullopt otherwise.
std::optional<TransposePlan> transpose_plan(const Tensor& dst, const Tensor& src, int tile_side) {
  const int64_t last = src.dim() - 1;
  if (last < 1 || dst.strides()[last] != 1 || src.strides()[last] == 1 || src.size(last) < 2) {
    return std::nullopt;
  }
  int64_t p = -1;
  for (int64_t d = 0; d < last && p < 0; ++d) {
    if (src.strides()[d] == 1 && src.size(d) > 1) p = d;
  }
  if (p < 0) return std::nullopt;
  Shape outer = src.shape();
  outer[p] = 1;
  outer[last] = 1;
  TransposePlan plan;
  plan.P = src.size(p);
  plan.Q = src.size(last);
  plan.src_q = src.strides()[last];
  plan.dst_p = dst.strides()[p];
  plan.tiles_p = (plan.P + tile_side - 1) / tile_side;
  plan.tiles_q = (plan.Q + tile_side - 1) / tile_side;
  plan.tiles = plan.tiles_p * plan.tiles_q * (src.numel() / (plan.P * plan.Q));
  plan.src_outer = make_indexer(outer, src.strides());
  plan.dst_outer = make_indexer(outer, dst.strides());
  return plan;
}

// The transposing copy of 2-byte values (bf16) without a conversion, two at a time: a thread reads
// two neighbours along p as one 4-byte word and writes two neighbours along the last dimension as
// one, through tiles of 64 x 64, so that each warp access covers 128 bytes (2-byte accesses
// covered 64: bf16 moved at 0.39 of a plain copy's rate, docs/benchmarks.md).
constexpr int kPairTileSide = 64;

template <typename T>
__global__ void transpose_pairs(T* dst, const T* src, TransposePlan plan) {
  static_assert(sizeof(T) == 2, "two values per 4-byte word");
  constexpr int kRowsPerThread = kPairTileSide / kTileRows;
  __shared__ uint32_t tile[kPairTileSide][kPairTileSide / 2 + 1];  // [along last][pairs along p]
  const int x = static_cast<int>(threadIdx.x), y = static_cast<int>(threadIdx.y);
  for (int64_t block = blockIdx.x; block < plan.tiles; block += gridDim.x) {
    const int64_t q0 = block % plan.tiles_q * kPairTileSide;
    const int64_t p0 = block / plan.tiles_q % plan.tiles_p * kPairTileSide;
    const int64_t outer = block / plan.tiles_q / plan.tiles_p;
    const T* from = src + plan.src_outer.offset(outer);
    T* to = dst + plan.dst_outer.offset(outer);
    uint32_t v[kRowsPerThread];  // values p0 + 2x, p0 + 2x + 1 of rows q0 + y, q0 + y + 8, ...
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t p = p0 + 2 * x, q = q0 + y + r * kTileRows;
      v[r] = p < plan.P && q < plan.Q
                 ? *reinterpret_cast<const uint32_t*>(from + p + q * plan.src_q)
                 : 0u;
    }
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) tile[y + r * kTileRows][x] = v[r];
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int i = y + r * kTileRows;  // row p0 + i of dst, values q0 + 2x and q0 + 2x + 1
      const int64_t p = p0 + i, q = q0 + 2 * x;
      const int shift = 16 * (i & 1);  // the lower address holds the even p
      const uint32_t lo = tile[2 * x][i / 2] >> shift & 0xffffu;
      const uint32_t hi = tile[2 * x + 1][i / 2] >> shift & 0xffffu;
      if (p < plan.P && q < plan.Q) {
        *reinterpret_cast<uint32_t*>(to + p * plan.dst_p + q) = lo | hi << 16;
      }
    }
    __syncthreads();
  }
}

// Whether transpose_pairs can copy src into dst: one 2-byte dtype, and every pair it moves is
// whole and 4-byte aligned: even sizes along p and the last dimension, 4-byte aligned data, and
// even strides along every other dimension of size > 1 (the stride-1 one of each tensor aside).
bool pairs_fit(const Tensor& dst, const Tensor& src, const TransposePlan& plan) {
  if (dst.dtype() != src.dtype() || dtype_size(src.dtype()) != 2 || plan.P % 2 || plan.Q % 2) {
    return false;
  }
  auto aligned_pairs = [](const Tensor& t) {
    int odd = 0;  // dimensions of size > 1 with an odd stride: only the stride-1 one may be
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (t.size(d) > 1 && t.strides()[d] % 2 != 0) odd += t.strides()[d] == 1 ? 1 : 2;
    }
    return odd <= 1 && reinterpret_cast<uintptr_t>(t.raw_data()) % 4 == 0;
  };
  return aligned_pairs(dst) && aligned_pairs(src);
}

// Rows in both: src and dst have stride 1 along the last dimension (slices, concat's and split's
// copies, permutes that keep the last dimension). Each thread moves one piece of kPiece
// consecutive elements of a row, so that short rows and few rows still spread over the whole GPU
// (the Mamba mixer's B and C are 64 rows of 2048 at a training batch of 4): a 16-byte vector when
// `vec` (one dtype, every row and piece 16-byte aligned), else kPiece loads then kPiece stores.
// The row's offsets come from the indexers once per piece.
struct RowsPlan {
  int64_t rows, Q;
  StridedIndexer src_rows, dst_rows;  // offsets of a row (the last dimension at size 1)
};

template <int kPiece, typename To, typename From>
__global__ void convert_rows(To* dst, const From* src, RowsPlan plan, bool vec) {
  const int64_t per_row = (plan.Q + kPiece - 1) / kPiece, pieces = plan.rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pieces;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / per_row, q = i % per_row * kPiece;
    const From* from = src + plan.src_rows.offset(row) + q;
    To* to = dst + plan.dst_rows.offset(row) + q;
    if constexpr (std::is_same_v<To, From> && kPiece * sizeof(From) == 16) {
      if (vec) {
        *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
        continue;
      }
    }
    From v[kPiece];
#pragma unroll
    for (int k = 0; k < kPiece; ++k) v[k] = q + k < plan.Q ? from[k] : From{};
#pragma unroll
    for (int k = 0; k < kPiece; ++k) {
      if (q + k < plan.Q) to[k] = convert<To>(v[k]);
    }
  }
}

// The plan for copying row by row, when both have stride 1 along a last dimension of at least 16
// elements; nullopt otherwise.
std::optional<RowsPlan> rows_plan(const Tensor& dst, const Tensor& src) {
  const int64_t last = src.dim() - 1;
  if (last < 0 || src.strides()[last] != 1 || dst.strides()[last] != 1 || src.size(last) < 16) {
    return std::nullopt;
  }
  Shape rows = src.shape();
  rows[last] = 1;
  return RowsPlan{.rows = src.numel() / src.size(last),
                  .Q = src.size(last),
                  .src_rows = make_indexer(rows, src.strides()),
                  .dst_rows = make_indexer(rows, dst.strides())};
}

// Whether every row of t starts 16-byte aligned and holds whole vectors of `per_vec` elements.
bool rows_aligned(const Tensor& t, int64_t per_vec) {
  if (t.size(t.dim() - 1) % per_vec != 0 || reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) {
    return false;
  }
  for (int64_t d = 0; d + 1 < t.dim(); ++d) {
    if (t.size(d) > 1 && t.strides()[d] % per_vec != 0) return false;
  }
  return true;
}

template <typename To, typename From>
void launch_rows(const Tensor& dst, const Tensor& src, const RowsPlan& plan) {
  constexpr int kVec = 16 / sizeof(From);
  const bool vec =
      std::is_same_v<To, From> && kVec > 1 && rows_aligned(dst, kVec) && rows_aligned(src, kVec);
  // One dtype: a 16-byte piece (scalar copies where it is not aligned); converting: 4 elements.
  constexpr int kPiece = std::is_same_v<To, From> ? kVec : 4;
  const int64_t pieces = plan.rows * ((plan.Q + kPiece - 1) / kPiece);
  const LaunchConfig launch = elementwise_launch(pieces);
  convert_rows<kPiece><<<launch.blocks, launch.threads, 0, current_stream()>>>(
      device_data<To>(dst), device_data<From>(src), plan, vec);
}

}  // namespace

void copy_strided(const Tensor& dst, const Tensor& src) {
  DSSM_CHECK(dst.shape() == src.shape() && dst.device() == src.device(), "copy",
             "expected one shape on one device, got {} and {}", describe(dst), describe(src));
  const int64_t n = dst.numel();
  if (n == 0) return;
  require_device(dst.device().index);
  const bool dense = dst.is_contiguous() && src.is_contiguous();
  if (dense && dst.dtype() == src.dtype()) {
    DSSM_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(),
                                    cudaMemcpyDeviceToDevice, current_stream()));
    return;
  }
  const std::optional<TransposePlan> transposed =
      dense ? std::nullopt : transpose_plan(dst, src, kTileSide);
  if (transposed && pairs_fit(dst, src, *transposed)) {
    const TransposePlan plan = *transpose_plan(dst, src, kPairTileSide);
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(plan.tiles, 1 << 20));
    transpose_pairs<<<blocks, dim3(32, kTileRows), 0, current_stream()>>>(
        static_cast<uint16_t*>(dst.raw_data()), static_cast<const uint16_t*>(src.raw_data()), plan);
    DSSM_CUDA_CHECK_LAUNCH("copy_strided");
    return;
  }
  const std::optional<RowsPlan> by_rows = dense || transposed ? std::nullopt : rows_plan(dst, src);
  dispatch_all(dst.dtype(), [&]<typename To>() {
    dispatch_all(src.dtype(), [&]<typename From>() {
      if (transposed) {
        const auto blocks = static_cast<unsigned>(std::min<int64_t>(transposed->tiles, 1 << 20));
        convert_transposed<<<blocks, dim3(32, kTileRows), 0, current_stream()>>>(
            device_data<To>(dst), device_data<From>(src), *transposed);
      } else if (by_rows) {
        launch_rows<To, From>(dst, src, *by_rows);
      } else {
        const LaunchConfig launch = elementwise_launch(n);
        if (dense) {
          convert_dense<<<launch.blocks, launch.threads, 0, current_stream()>>>(
              device_data<To>(dst), device_data<From>(src), n);
        } else {
          convert_strided<<<launch.blocks, launch.threads, 0, current_stream()>>>(
              device_data<To>(dst), make_indexer(dst.shape(), dst.strides()),
              device_data<From>(src), make_indexer(src.shape(), src.strides()), n);
        }
      }
      DSSM_CUDA_CHECK_LAUNCH("copy_strided");
    });
  });
}

}  // namespace dssm::cuda
