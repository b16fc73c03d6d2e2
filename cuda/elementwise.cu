// Elementwise kernels of ops/unary.cpp and ops/binary.cpp. The math of every op is the shared
// definition in ops/elementwise_math.hpp (math::unary_forward, unary_derivative, binary_forward),
// evaluated in the compute type (float for bf16 and f32, double for f64).
//
// Dense operands go through map_dense: a grid-stride loop that moves 16 bytes per load and store
// when every pointer is 16-byte aligned. A binary operand of the output's shape in another layout
// (a transposed view) is first copied into the output's layout (copy_strided's tiled path); a
// vector broadcast along the leading dimensions (a bias, a per-channel scale) goes through
// map_row_broadcast, a column (one value per run of trailing elements: a per-channel scale of a
// channel-major tensor) through map_column_broadcast; other broadcasts through binary_strided,
// which locates each element of the broadcast operand with a StridedIndexer.
#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels.hpp"

namespace dssm::cuda {
namespace {

// kVec consecutive elements moved as one aligned load or store.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// out[i] = fn(in_0[i], ..., in_{K-1}[i]) over n dense elements. fn works in compute types.
template <int kVec, typename T, int K, typename Fn>
__global__ void map_dense(T* out, Pack<const T*, K> in, int64_t n, Fn fn) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t packs = n / kVec;
  for (int64_t p = first; p < packs; p += stride) {
    Pack<T, kVec> args[K];
    for (int k = 0; k < K; ++k) args[k] = reinterpret_cast<const Pack<T, kVec>*>(in.v[k])[p];
    Pack<T, kVec> result;
    for (int j = 0; j < kVec; ++j) {
      if constexpr (K == 1) result.v[j] = from_compute<T>(fn(to_compute(args[0].v[j])));
      if constexpr (K == 2) {
        result.v[j] = from_compute<T>(fn(to_compute(args[0].v[j]), to_compute(args[1].v[j])));
      }
    }
    reinterpret_cast<Pack<T, kVec>*>(out)[p] = result;
  }
  for (int64_t i = packs * kVec + first; i < n; i += stride) {  // the tail past the last pack
    if constexpr (K == 1) out[i] = from_compute<T>(fn(to_compute(in.v[0][i])));
    if constexpr (K == 2)
      out[i] = from_compute<T>(fn(to_compute(in.v[0][i]), to_compute(in.v[1][i])));
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Launches map_dense, vectorised when out and every input are 16-byte aligned.
template <typename T, int K, typename Fn>
void launch_map(const char* name, T* out, Pack<const T*, K> in, int64_t n, Fn fn) {
  constexpr int kVec = 16 / sizeof(T);
  bool vectorise = aligned16(out);
  for (int k = 0; k < K; ++k) vectorise = vectorise && aligned16(in.v[k]);
  if (vectorise) {
    const LaunchConfig launch = elementwise_launch((n + kVec - 1) / kVec);
    map_dense<kVec><<<launch.blocks, launch.threads, 0, current_stream()>>>(out, in, n, fn);
  } else {
    const LaunchConfig launch = elementwise_launch(n);
    map_dense<1><<<launch.blocks, launch.threads, 0, current_stream()>>>(out, in, n, fn);
  }
  DSSM_CUDA_CHECK_LAUNCH(name);
}

template <UnaryOp kOp, typename C>
struct UnaryForward {
  C param;
  __device__ C operator()(C x) const { return math::unary_forward<kOp, C>(x, param); }
};

// grad_in = grad_out * f'(saved); `saved` is x or y, whichever ops/unary.cpp kept, and the
// derivative reads only that one.
template <UnaryOp kOp, typename C>
struct UnaryBackward {
  C param;
  __device__ C operator()(C grad, C saved) const {
    return grad * math::unary_derivative<kOp, C>(saved, saved, param);
  }
};

template <BinaryOp kOp, typename C>
struct BinaryForward {
  __device__ C operator()(C a, C b) const { return math::binary_forward<kOp, C>(a, b); }
};

// out (dense) = a (op) b, a and b read through their broadcast strides; an operand flagged
// dense is read at the output's index (the indexer's 64-bit divisions cost more than the load).
template <typename T, typename Fn>
__global__ void binary_strided(T* out, const T* a, StridedIndexer a_index, bool a_dense, const T* b,
                               StridedIndexer b_index, bool b_dense, int64_t n, Fn fn) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const T va = a[a_dense ? i : a_index.offset(i)], vb = b[b_dense ? i : b_index.offset(i)];
    out[i] = from_compute<T>(fn(to_compute(va), to_compute(vb)));
  }
}

// out = full (op) row[i % inner] (or row (op) full when row_first): `row` is a dense vector of
// `inner` elements repeated along the leading dimensions of the dense `full`, kVec elements at a
// time (inner a multiple of kVec when kVec > 1).
template <int kVec, typename T, typename Fn>
__global__ void map_row_broadcast(T* out, const T* full, const T* row, int64_t inner,
                                  bool row_first, int64_t n, Fn fn) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < n / kVec; p += stride) {
    const Pack<T, kVec> f = reinterpret_cast<const Pack<T, kVec>*>(full)[p];
    const Pack<T, kVec> r = *reinterpret_cast<const Pack<T, kVec>*>(row + (p * kVec) % inner);
    Pack<T, kVec> result;
    for (int j = 0; j < kVec; ++j) {
      const auto x = to_compute(f.v[j]), y = to_compute(r.v[j]);
      result.v[j] = from_compute<T>(row_first ? fn(y, x) : fn(x, y));
    }
    reinterpret_cast<Pack<T, kVec>*>(out)[p] = result;
  }
}

template <int kVec, typename T, typename Fn>
void launch_row_broadcast(T* out, const T* full, const T* row, int64_t inner, bool row_first,
                          int64_t n, Fn fn) {
  const LaunchConfig launch = elementwise_launch(n / kVec);
  map_row_broadcast<kVec><<<launch.blocks, launch.threads, 0, current_stream()>>>(
      out, full, row, inner, row_first, n, fn);
  DSSM_CUDA_CHECK_LAUNCH("binary");
}

// out = full (op) column[(i / inner) % rows] (or column (op) full when column_first): `column`
// holds one value per run of `inner` consecutive elements of the dense `full`, repeated along the
// leading dimensions (a per-channel scale of a channel-major [B, C, T] tensor), kVec elements at a
// time (inner a multiple of kVec when kVec > 1).
template <int kVec, typename T, typename Fn>
__global__ void map_column_broadcast(T* out, const T* full, const T* column, int64_t inner,
                                     int64_t rows, bool column_first, int64_t n, Fn fn) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < n / kVec; p += stride) {
    const Pack<T, kVec> f = reinterpret_cast<const Pack<T, kVec>*>(full)[p];
    const auto c = to_compute(column[(p * kVec / inner) % rows]);
    Pack<T, kVec> result;
    for (int j = 0; j < kVec; ++j) {
      const auto x = to_compute(f.v[j]);
      result.v[j] = from_compute<T>(column_first ? fn(c, x) : fn(x, c));
    }
    reinterpret_cast<Pack<T, kVec>*>(out)[p] = result;
  }
}

template <int kVec, typename T, typename Fn>
void launch_column_broadcast(T* out, const T* full, const T* column, int64_t inner, int64_t rows,
                             bool column_first, int64_t n, Fn fn) {
  const LaunchConfig launch = elementwise_launch(n / kVec);
  map_column_broadcast<kVec><<<launch.blocks, launch.threads, 0, current_stream()>>>(
      out, full, column, inner, rows, column_first, n, fn);
  DSSM_CUDA_CHECK_LAUNCH("binary");
}

// How a broadcast operand t repeats when read as `shape`: a dense block of `length` values (t's
// dims that match shape's) between leading dims and trailing dims it is broadcast along, each
// value repeated `inner` times (the product of the trailing ones). Output element i reads
// t[(i / inner) % length]: a row (a bias, inner 1) or a column (a per-channel scale of a
// channel-major [B, C, T] tensor, inner T). length 0: t is not such a block.
struct Repeat {
  int64_t length = 0, inner = 1;
};

Repeat repeat_of(const Tensor& t, const Shape& shape) {
  if (!t.is_contiguous() || t.numel() == 0) return {};
  const size_t lead = shape.size() - t.shape().size();
  auto broadcast = [&](size_t d) { return t.shape()[d] == 1 && shape[lead + d] != 1; };
  size_t first = 0, last = t.shape().size();
  while (first < last && broadcast(first)) ++first;
  Repeat repeat;
  while (last > first && broadcast(last - 1)) repeat.inner *= shape[lead + --last];
  for (size_t d = first; d < last; ++d) {
    if (t.shape()[d] != shape[lead + d]) return {};
  }
  repeat.length = t.numel();
  return repeat;
}

void check_dense(const char* op, const Tensor& t) {
  DSSM_CHECK(t.is_contiguous(), op, "CUDA kernel expects contiguous tensors, got a view {}",
             describe(t));
}

}  // namespace

void unary(UnaryOp op, const Tensor& out, const Tensor& x, double param) {
  check_dense("unary", x), check_dense("unary", out);
  require_device(x.device().index);
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_floating(x.dtype(), "unary", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_unary(op, [&]<UnaryOp kOp>() {
      launch_map<device_t<T>, 1>("unary", device_data<T>(out), {{device_data<T>(x)}}, n,
                                 UnaryForward<kOp, C>{static_cast<C>(param)});
    });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out, const Tensor& saved,
                    double param) {
  check_dense("unary backward", grad_in), check_dense("unary backward", grad_out);
  check_dense("unary backward", saved);
  require_device(saved.device().index);
  const int64_t n = saved.numel();
  if (n == 0) return;
  dispatch_floating(saved.dtype(), "unary backward", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_unary(op, [&]<UnaryOp kOp>() {
      launch_map<device_t<T>, 2>("unary backward", device_data<T>(grad_in),
                                 {{device_data<T>(grad_out), device_data<T>(saved)}}, n,
                                 UnaryBackward<kOp, C>{static_cast<C>(param)});
    });
  });
}

void binary(BinaryOp op, const Tensor& out, const Tensor& a_in, const Tensor& b_in) {
  check_dense("binary", out);
  require_device(out.device().index);
  const int64_t n = out.numel();
  if (n == 0) return;
  // An operand of the output's shape in another layout is copied into the output's: the copy's
  // tiled path reads and writes coalesced, where reading it at the output's order would touch
  // one element per 32-byte sector (the [B, T, D] and [B, D, T] views around the selective scan:
  // docs/benchmarks.md, "Training step").
  auto in_out_layout = [&](const Tensor& t) {
    return t.shape() == out.shape() ? t.contiguous() : t;
  };
  const Tensor a = in_out_layout(a_in), b = in_out_layout(b_in);
  const bool a_dense = a.shape() == out.shape(), b_dense = b.shape() == out.shape();
  const Repeat a_repeat = b_dense ? repeat_of(a, out.shape()) : Repeat{};
  const Repeat b_repeat = a_dense ? repeat_of(b, out.shape()) : Repeat{};
  // The repeated operand, if either is one, and the dense one.
  const bool a_repeats = a_repeat.length > 0;
  const Repeat repeat = a_repeats ? a_repeat : b_repeat;
  const Tensor &full = a_repeats ? b : a, &repeated = a_repeats ? a : b;
  dispatch_floating(out.dtype(), "binary", [&]<typename T>() {
    using C = compute_t<T>;
    using D = device_t<T>;
    dispatch_binary(op, [&]<BinaryOp kOp>() {
      if (a_dense && b_dense) {
        launch_map<D, 2>("binary", device_data<T>(out), {{device_data<T>(a), device_data<T>(b)}}, n,
                         BinaryForward<kOp, C>{});
        return;
      }
      constexpr int kVec = 16 / sizeof(T);
      if (repeat.length > 0 && repeat.inner == 1) {  // a row
        const bool vectorise = repeat.length % kVec == 0 && aligned16(out.raw_data()) &&
                               aligned16(full.raw_data()) && aligned16(repeated.raw_data());
        const auto launch = vectorise ? launch_row_broadcast<kVec, D, BinaryForward<kOp, C>>
                                      : launch_row_broadcast<1, D, BinaryForward<kOp, C>>;
        launch(device_data<T>(out), device_data<T>(full), device_data<T>(repeated), repeat.length,
               a_repeats, n, BinaryForward<kOp, C>{});
        return;
      }
      if (repeat.length > 0) {  // a column
        const bool vectorise =
            repeat.inner % kVec == 0 && aligned16(out.raw_data()) && aligned16(full.raw_data());
        const auto launch = vectorise ? launch_column_broadcast<kVec, D, BinaryForward<kOp, C>>
                                      : launch_column_broadcast<1, D, BinaryForward<kOp, C>>;
        launch(device_data<T>(out), device_data<T>(full), device_data<T>(repeated), repeat.inner,
               repeat.length, a_repeats, n, BinaryForward<kOp, C>{});
        return;
      }
      const StridedIndexer a_index = make_broadcast_indexer(a, out.shape());
      const StridedIndexer b_index = make_broadcast_indexer(b, out.shape());
      const LaunchConfig launch = elementwise_launch(n);
      binary_strided<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), device_data<T>(a), a_index, a_dense, device_data<T>(b), b_index,
          b_dense, n, BinaryForward<kOp, C>{});
      DSSM_CUDA_CHECK_LAUNCH("binary");
    });
  });
}

}  // namespace dssm::cuda
