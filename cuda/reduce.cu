// Row reductions of ops/reduce.cpp: out[r] = sum_j rows[r, j], or max_j rows[r, j] with the first
// position of the maximum, over a contiguous [outer, inner] tensor; and scatter_rows, the
// backward of max. Accumulation is in the compute type (f32 for bf16 and f32, f64 for f64).
//
// A group of threads reduces one row: a warp for short rows (8 rows per block), a block of 256
// for long ones. Each thread folds a strided slice of the row, then the group combines through
// warp shuffles (and shared memory across warps). When there are too few rows to fill the GPU
// (e.g. a sum over everything) each row is cut into segments reduced by separate blocks, and a
// second pass reduces the per-segment partial results.
#include <algorithm>
#include <limits>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels.hpp"

namespace dssm::cuda {
namespace {

// A partial result: the running sum, or the running maximum and where it was first seen.
template <typename C>
struct Acc {
  C value;
  int64_t index;
};

template <ReduceOp kOp, typename C>
__device__ __forceinline__ Acc<C> identity() {
  if constexpr (kOp == ReduceOp::sum) return {C(0), 0};
  return {-std::numeric_limits<C>::infinity(), std::numeric_limits<int64_t>::max()};
}

// For max, ties go to the smaller index, so the result is the first maximum whatever the order
// in which slices are combined.
template <ReduceOp kOp, typename C>
__device__ __forceinline__ Acc<C> combine(Acc<C> a, Acc<C> b) {
  if constexpr (kOp == ReduceOp::sum) return {a.value + b.value, 0};
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

template <ReduceOp kOp, typename C>
__device__ __forceinline__ Acc<C> warp_reduce(Acc<C> acc) {
  for (int offset = 16; offset > 0; offset /= 2) {
    Acc<C> other{__shfl_down_sync(0xffffffffu, acc.value, offset), 0};
    if constexpr (kOp == ReduceOp::max)
      other.index = __shfl_down_sync(0xffffffffu, acc.index, offset);
    acc = combine<kOp>(acc, other);
  }
  return acc;
}

// Where the values come from: element j of row r of the input...
template <typename T>
struct RowElements {
  const T* data;
  int64_t inner;
  __device__ Acc<decltype(to_compute(T()))> operator()(int64_t r, int64_t j) const {
    return {to_compute(data[r * inner + j]), j};
  }
};
// ... or partial result j of row r from the first pass.
template <typename C>
struct RowPartials {
  const Acc<C>* data;
  int64_t segments;
  __device__ Acc<C> operator()(int64_t r, int64_t j) const { return data[r * segments + j]; }
};

// Where the results go: the op's output (and argmax indices)...
template <typename T, typename C>
struct WriteResult {
  T* out;
  int64_t* indices;  // null for sum and when not wanted
  __device__ void operator()(int64_t r, int, Acc<C> acc) const {
    out[r] = from_compute<T>(acc.value);
    if (indices) indices[r] = acc.index == std::numeric_limits<int64_t>::max() ? 0 : acc.index;
  }
};
// ... or the partial-result buffer of the first pass.
template <typename C>
struct WritePartial {
  Acc<C>* partials;
  int segments;
  __device__ void operator()(int64_t r, int segment, Acc<C> acc) const {
    partials[r * segments + segment] = acc;
  }
};

// Block (blockDim.x, blockDim.y): blockDim.y rows per block, blockDim.x threads per row; when
// blockDim.x > 32 then blockDim.y == 1. blockIdx.y picks the segment of the row.
template <ReduceOp kOp, typename C, typename Source, typename Sink>
__global__ void reduce_kernel(Source source, Sink sink, int64_t rows, int64_t length) {
  const int64_t r = blockIdx.x * int64_t{blockDim.y} + threadIdx.y;
  const int64_t per_segment = (length + gridDim.y - 1) / gridDim.y;
  const int64_t begin = blockIdx.y * per_segment;
  const int64_t end = min(length, begin + per_segment);
  Acc<C> acc = identity<kOp, C>();
  if (r < rows) {
    // Four independent loads in flight per thread: memory latency, not arithmetic, bounds this.
    const int64_t step = blockDim.x;
    int64_t j = begin + threadIdx.x;
    for (; j + 3 * step < end; j += 4 * step) {
      const Acc<C> pair01 = combine<kOp>(source(r, j), source(r, j + step));
      const Acc<C> pair23 = combine<kOp>(source(r, j + 2 * step), source(r, j + 3 * step));
      acc = combine<kOp>(acc, combine<kOp>(pair01, pair23));
    }
    for (; j < end; j += step) acc = combine<kOp>(acc, source(r, j));
  }
  acc = warp_reduce<kOp>(acc);
  if (blockDim.x > 32) {
    __shared__ Acc<C> per_warp[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) per_warp[warp] = acc;
    __syncthreads();
    acc = threadIdx.x < blockDim.x / 32 ? per_warp[threadIdx.x] : identity<kOp, C>();
    if (warp == 0) acc = warp_reduce<kOp>(acc);
  }
  if (threadIdx.x == 0 && r < rows) sink(r, blockIdx.y, acc);
}

template <ReduceOp kOp, typename C, typename Source, typename Sink>
void launch_reduce(Source source, Sink sink, int64_t rows, int64_t length, int segments) {
  const bool short_rows = length <= 256;
  const dim3 block = short_rows ? dim3(32, 8) : dim3(256, 1);
  const dim3 grid(static_cast<unsigned>((rows + block.y - 1) / block.y), segments);
  reduce_kernel<kOp, C><<<grid, block, 0, current_stream()>>>(source, sink, rows, length);
  DSSM_CUDA_CHECK_LAUNCH("reduce_rows");
}

template <ReduceOp kOp, typename T>
void reduce_typed(const Tensor& out, const Tensor& indices, const Tensor& rows) {
  using C = compute_t<T>;
  const int64_t outer = rows.size(0), inner = rows.size(1);
  const RowElements<device_t<T>> elements{device_data<T>(rows), inner};
  const WriteResult<device_t<T>, C> result{device_data<T>(out),
                                           indices.defined() ? indices.data<int64_t>() : nullptr};
  // Few long rows: split each into segments so that about 8 blocks per SM have work.
  const int64_t wanted_blocks = int64_t{8} * multiprocessor_count();
  int64_t segments = 1;
  if (outer < wanted_blocks && inner >= 16384) {
    segments = std::min({(wanted_blocks + outer - 1) / outer, inner / 4096, int64_t{65535}});
  }
  if (segments == 1) return launch_reduce<kOp, C>(elements, result, outer, inner, 1);
  const int s = static_cast<int>(segments);
  const int64_t words = (outer * segments * int64_t{sizeof(Acc<C>)} + 7) / 8;
  const Tensor scratch = Tensor::empty({words}, DType::i64, rows.device());
  auto* partials = reinterpret_cast<Acc<C>*>(scratch.data<int64_t>());
  launch_reduce<kOp, C>(elements, WritePartial<C>{partials, s}, outer, inner, s);
  launch_reduce<kOp, C>(RowPartials<C>{partials, segments}, result, outer, segments, 1);
}

// out[r, indices[r]] = values[r]; indices outside [0, inner) are skipped.
template <typename T>
__global__ void scatter_rows_kernel(T* out, const T* values, const int64_t* indices, int64_t outer,
                                    int64_t inner) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < outer;
       r += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = indices[r];
    if (j >= 0 && j < inner) out[r * inner + j] = values[r];
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& rows) {
  DSSM_CHECK(rows.dim() == 2 && rows.is_contiguous(), "reduce_rows",
             "expected a contiguous [outer, inner] tensor, got {}", describe(rows));
  DSSM_CHECK(out.is_contiguous() && out.numel() == rows.size(0) && out.dtype() == rows.dtype(),
             "reduce_rows", "expected a contiguous output of {} {} values, got {}", rows.size(0),
             dtype_name(rows.dtype()), describe(out));
  DSSM_CHECK(!indices.defined() || (indices.dtype() == DType::i64 && indices.is_contiguous() &&
                                    indices.numel() == rows.size(0)),
             "reduce_rows", "expected i64 indices of {} elements, got {}", rows.size(0),
             describe(indices));
  if (rows.size(0) == 0) return;
  require_device(rows.device().index);
  dispatch_floating(rows.dtype(), "reduce_rows", [&]<typename T>() {
    if (op == ReduceOp::sum) {
      reduce_typed<ReduceOp::sum, T>(out, indices, rows);
    } else {
      reduce_typed<ReduceOp::max, T>(out, indices, rows);
    }
  });
}

void scatter_rows(const Tensor& out, const Tensor& values, const Tensor& indices) {
  DSSM_CHECK(out.dim() == 2 && out.is_contiguous() && values.is_contiguous() &&
                 values.numel() == out.size(0) && values.dtype() == out.dtype(),
             "scatter_rows",
             "expected a contiguous [outer, inner] output and outer values, got {} and {}",
             describe(out), describe(values));
  DSSM_CHECK(
      indices.dtype() == DType::i64 && indices.is_contiguous() && indices.numel() == out.size(0),
      "scatter_rows", "expected i64 indices of {} elements, got {}", out.size(0),
      describe(indices));
  const int64_t outer = out.size(0);
  if (outer == 0) return;
  require_device(out.device().index);
  const LaunchConfig launch = elementwise_launch(outer);
  dispatch_floating(out.dtype(), "scatter_rows", [&]<typename T>() {
    scatter_rows_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(values), indices.data<int64_t>(), outer, out.size(1));
    DSSM_CUDA_CHECK_LAUNCH("scatter_rows");
  });
}

}  // namespace dssm::cuda
