// The indexing kernels of ops/shape.cpp: index_select (a gather), its index-add backward
// (atomicAdd in the compute type), where (with broadcast operands), and scan_indices, which finds
// the first out-of-range index so that ops can report it before any kernel reads with it.
#include <limits>

#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"

namespace dssm::cuda {
namespace {

// x viewed as [outer, size, inner], out as [outer, n, inner]; e walks out.
__device__ __forceinline__ int64_t source_offset(int64_t e, int64_t index_value, int64_t n,
                                                 int64_t size, int64_t inner) {
  const int64_t o = e / (n * inner), j = e % inner;
  return (o * size + index_value) * inner + j;
}

template <typename D, typename I>
__global__ void index_select_kernel(D* out, const D* x, const I* index, int64_t total, int64_t n,
                                    int64_t size, int64_t inner) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * blockDim.x) {
    out[e] = x[source_offset(e, index[(e / inner) % n], n, size, inner)];
  }
}

template <typename D, typename C, typename I>
__global__ void index_add_kernel(C* grad_x, const D* g, const I* index, int64_t total, int64_t n,
                                 int64_t size, int64_t inner) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * blockDim.x) {
    atomicAdd(grad_x + source_offset(e, index[(e / inner) % n], n, size, inner),
              C(to_compute(g[e])));
  }
}

template <typename K>
__device__ __forceinline__ bool is_true(K v) {
  if constexpr (std::is_same_v<K, __nv_bfloat16>) {
    return __bfloat162float(v) != 0.0f;
  } else {
    return v != K(0);
  }
}

template <typename D, typename K>
__global__ void where_kernel(D* out, const K* cond, const D* a, const D* b, int64_t total,
                             StridedIndexer at_cond, StridedIndexer at_a, StridedIndexer at_b) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * blockDim.x) {
    out[e] = is_true(cond[at_cond.offset(e)]) ? a[at_a.offset(e)] : b[at_b.offset(e)];
  }
}

// result[0]: the smallest bad position (int64 max when none); result[1]: the ignored count.
template <typename I>
__global__ void scan_indices_kernel(unsigned long long* result, const I* index, int64_t n,
                                    int64_t size, bool has_ignore, int64_t ignore) {
  unsigned long long first_bad = std::numeric_limits<int64_t>::max(), ignored = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t v = index[i];
    if (has_ignore && v == ignore) {
      ++ignored;
    } else if ((v < 0 || v >= size) && static_cast<unsigned long long>(i) < first_bad) {
      first_bad = static_cast<unsigned long long>(i);
    }
  }
  if (first_bad != static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
    atomicMin(result, first_bad);
  }
  if (ignored > 0) atomicAdd(result + 1, ignored);
}

}  // namespace

void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                  int64_t inner) {
  const int64_t n = index.numel(), size = x.numel() / (outer * inner), total = out.numel();
  const LaunchConfig launch = elementwise_launch(total);
  dispatch_all(x.dtype(), [&]<typename T>() {
    dispatch_index(index.dtype(), "index_select", [&]<typename I>() {
      index_select_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), device_data<T>(x), index.data<I>(), total, n, size, inner);
      DSSM_CUDA_CHECK_LAUNCH("index_select_kernel");
    });
  });
}

void index_add(const Tensor& grad_x, const Tensor& g, const Tensor& index, int64_t outer,
               int64_t inner) {
  const int64_t n = index.numel(), size = grad_x.numel() / (outer * inner), total = g.numel();
  const LaunchConfig launch = elementwise_launch(total);
  dispatch_floating(g.dtype(), "index_select backward", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_index(index.dtype(), "index_select backward", [&]<typename I>() {
      index_add_kernel<device_t<T>, C, I><<<launch.blocks, launch.threads, 0, current_stream()>>>(
          grad_x.data<C>(), device_data<T>(g), index.data<I>(), total, n, size, inner);
      DSSM_CUDA_CHECK_LAUNCH("index_add_kernel");
    });
  });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const StridedIndexer at_cond = make_broadcast_indexer(cond, out.shape());
  const StridedIndexer at_a = make_broadcast_indexer(a, out.shape());
  const StridedIndexer at_b = make_broadcast_indexer(b, out.shape());
  const LaunchConfig launch = elementwise_launch(out.numel());
  dispatch_all(out.dtype(), [&]<typename T>() {
    dispatch_all(cond.dtype(), [&]<typename K>() {
      where_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
          device_data<T>(out), device_data<K>(cond), device_data<T>(a), device_data<T>(b),
          out.numel(), at_cond, at_a, at_b);
      DSSM_CUDA_CHECK_LAUNCH("where_kernel");
    });
  });
}

IndexScan scan_indices(const Tensor& index, int64_t size, bool has_ignore, int64_t ignore) {
  IndexScan scan;
  if (index.numel() == 0) return scan;
  const Tensor result = Tensor::from_vector<int64_t>({std::numeric_limits<int64_t>::max(), 0}, {2},
                                                     DType::i64, index.device());
  const LaunchConfig launch = elementwise_launch(index.numel());
  dispatch_index(index.dtype(), "scan_indices", [&]<typename I>() {
    scan_indices_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        reinterpret_cast<unsigned long long*>(result.data<int64_t>()), index.data<I>(),
        index.numel(), size, has_ignore, ignore);
    DSSM_CUDA_CHECK_LAUNCH("scan_indices_kernel");
  });
  const std::vector<int64_t> found = result.to_vector<int64_t>();  // waits for the kernel
  scan.ignored = found[1];
  if (found[0] != std::numeric_limits<int64_t>::max()) {
    scan.first_bad = found[0];
    scan.bad_value = index.reshape({-1}).narrow(0, found[0], 1).to_vector<int64_t>()[0];
  }
  return scan;
}

}  // namespace dssm::cuda
