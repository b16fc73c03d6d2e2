// Elementwise kernels of ops/unary.cpp and ops/binary.cpp. The math of every op is the shared
// definition in ops/elementwise_math.hpp (math::unary_forward, unary_derivative, binary_forward),
// evaluated in the compute type (float for bf16 and f32, double for f64).
//
// Dense operands go through map_dense: a grid-stride loop that moves 16 bytes per load and store
// when every pointer is 16-byte aligned. Broadcast or strided binary operands go through
// binary_strided, which locates each element with a StridedIndexer.
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

// out (dense) = a (op) b, a and b read through their broadcast strides.
template <typename T, typename Fn>
__global__ void binary_strided(T* out, const T* a, StridedIndexer a_index, const T* b,
                               StridedIndexer b_index, int64_t n, Fn fn) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] =
        from_compute<T>(fn(to_compute(a[a_index.offset(i)]), to_compute(b[b_index.offset(i)])));
  }
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

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  check_dense("binary", out);
  require_device(out.device().index);
  const int64_t n = out.numel();
  if (n == 0) return;
  const bool dense = a.shape() == out.shape() && b.shape() == out.shape() && a.is_contiguous() &&
                     b.is_contiguous();
  dispatch_floating(out.dtype(), "binary", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_binary(op, [&]<BinaryOp kOp>() {
      if (dense) {
        launch_map<device_t<T>, 2>("binary", device_data<T>(out),
                                   {{device_data<T>(a), device_data<T>(b)}}, n,
                                   BinaryForward<kOp, C>{});
        return;
      }
      const StridedIndexer a_index = make_broadcast_indexer(a, out.shape());
      const StridedIndexer b_index = make_broadcast_indexer(b, out.shape());
      const LaunchConfig launch = elementwise_launch(n);
      binary_strided<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), device_data<T>(a), a_index, device_data<T>(b), b_index, n,
          BinaryForward<kOp, C>{});
      DSSM_CUDA_CHECK_LAUNCH("binary");
    });
  });
}

}  // namespace dssm::cuda
