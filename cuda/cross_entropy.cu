// Fused cross-entropy over the rows of logits [N, V] (ops/cross_entropy.cpp), one block per row.
// Forward: a single online-softmax pass over the vocabulary row gives lse = m + log s, and the
// row's loss is lse - logits[target] (0 when the row is ignored). Backward: each element is
// written once, dlogits = (exp(logits - lse) - [v = target]) * g * scale.
// Rows of 16-byte-aligned logits use the vector kernels (16-byte loads and stores, kUnroll of
// them in flight per thread, and in the forward one rescale of the running sum per chunk of
// kUnroll packs rather than per element); others the scalar kernels.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/shape.hpp"

namespace dssm::cuda {
namespace {

// Thread 0 of the row's block, given the row's (max, sum of exp): lse = max + log(sum) and the
// row's loss lse - x[target] (0 for an ignored target).
template <typename D, typename C, typename I>
__device__ void finish_row(MaxSum<C> s, C* row_loss, C* lse, const D* xr, const I* targets,
                           int64_t ignore_index) {
  if (threadIdx.x != 0) return;
  const C row_lse = s.max + log_c(s.sum);
  const int64_t t = targets[blockIdx.x];
  lse[blockIdx.x] = row_lse;
  row_loss[blockIdx.x] = t == ignore_index ? C(0) : row_lse - C(to_compute(xr[t]));
}

template <typename D, typename C, typename I>
__global__ void cross_entropy_forward_kernel(C* row_loss, C* lse, const D* logits, const I* targets,
                                             int64_t vocab, int64_t ignore_index) {
  const D* xr = logits + blockIdx.x * vocab;
  MaxSum<C> s;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) s = add_value(s, C(to_compute(xr[v])));
  finish_row(block_max_sum(s), row_loss, lse, xr, targets, ignore_index);
}

template <typename D, typename C, typename I>
__global__ void cross_entropy_backward_kernel(D* dlogits, const D* logits, const I* targets,
                                              const C* lse, const C* grad_loss, C scale,
                                              int64_t vocab, int64_t ignore_index) {
  const int64_t base = blockIdx.x * vocab, t = targets[blockIdx.x];
  const C factor = t == ignore_index ? C(0) : grad_loss[0] * scale;
  const C row_lse = lse[blockIdx.x];
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const C p = exp_c(C(to_compute(logits[base + v])) - row_lse);
    dlogits[base + v] = from_compute<D>((p - C(v == t ? 1 : 0)) * factor);
  }
}

constexpr int kUnroll = 4;
constexpr unsigned kVectorThreads = 256;

// The forward on 16-byte packs: each thread folds chunks of kUnroll packs into its (max, sum):
// the chunk's max first, then one exp per element against the running max, summed in kChunk
// independent chains. A chunk is 16 compute values (4 f32 or f64 packs, 2 bf16 packs).
template <typename D, typename C, typename I>
__global__ void __launch_bounds__(kVectorThreads)
    cross_entropy_forward_vec_kernel(C* row_loss, C* lse, const D* logits, const I* targets,
                                     int64_t vocab, int64_t ignore_index) {
  constexpr int kVec = Pack<D>::kSize;
  constexpr int kChunk = std::max(1, std::min(kUnroll, 16 / kVec));
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();
  const D* xr = logits + blockIdx.x * vocab;
  const Pack<D>* packs_of_row = reinterpret_cast<const Pack<D>*>(xr);
  const int64_t packs = vocab / kVec;
  MaxSum<C> s;
  for (int64_t first = threadIdx.x; first < packs; first += int64_t{kChunk} * blockDim.x) {
    Pack<D> raw[kChunk];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int64_t p = first + int64_t{u} * blockDim.x;
      if (p < packs) raw[u] = packs_of_row[p];
    }
    C v[kChunk][kVec];
    C chunk_max = kNegInf;
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const bool valid = first + int64_t{u} * blockDim.x < packs;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        v[u][k] = valid ? C(to_compute(raw[u].v[k])) : kNegInf;
        chunk_max = max(chunk_max, v[u][k]);
      }
    }
    if (chunk_max == kNegInf) continue;  // nothing to add (or all -inf)
    if (chunk_max > s.max) {
      s.sum *= exp_c(s.max - chunk_max);  // 0 while s is empty
      s.max = chunk_max;
    }
    C chains[kChunk] = {};
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) chains[u] += exp_c(v[u][k] - s.max);
    }
#pragma unroll
    for (int u = 0; u < kChunk; ++u) s.sum += chains[u];
  }
  finish_row(block_max_sum(s), row_loss, lse, xr, targets, ignore_index);
}

// The backward on 16-byte packs, kUnroll loads in flight per thread before the stores.
template <typename D, typename C, typename I>
__global__ void __launch_bounds__(kVectorThreads)
    cross_entropy_backward_vec_kernel(D* dlogits, const D* logits, const I* targets, const C* lse,
                                      const C* grad_loss, C scale, int64_t vocab,
                                      int64_t ignore_index) {
  constexpr int kVec = Pack<D>::kSize;
  const int64_t base = blockIdx.x * vocab, t = targets[blockIdx.x];
  const C factor = t == ignore_index ? C(0) : grad_loss[0] * scale;
  const C row_lse = lse[blockIdx.x];
  const Pack<D>* in = reinterpret_cast<const Pack<D>*>(logits + base);
  Pack<D>* out = reinterpret_cast<Pack<D>*>(dlogits + base);
  const int64_t packs = vocab / kVec;
  for (int64_t first = threadIdx.x; first < packs; first += int64_t{kUnroll} * blockDim.x) {
    Pack<D> raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + int64_t{u} * blockDim.x;
      if (p < packs) raw[u] = in[p];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + int64_t{u} * blockDim.x;
      if (p >= packs) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const C prob = exp_c(C(to_compute(raw[u].v[k])) - row_lse);
        raw[u].v[k] = from_compute<D>((prob - C(p * kVec + k == t ? 1 : 0)) * factor);
      }
      out[p] = raw[u];
    }
  }
}

}  // namespace

void cross_entropy_forward(const Tensor& row_loss, const Tensor& lse, const Tensor& logits,
                           const Tensor& targets, int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_index(targets.dtype(), "cross_entropy", [&]<typename I>() {
      if ((vocab * int64_t{sizeof(T)}) % 16 == 0 && aligned16({logits.raw_data()})) {
        cross_entropy_forward_vec_kernel<device_t<T>, C, I>
            <<<static_cast<unsigned>(rows), kVectorThreads, 0, current_stream()>>>(
                row_loss.data<C>(), lse.data<C>(), device_data<T>(logits), targets.data<I>(), vocab,
                ignore_index);
        DSSM_CUDA_CHECK_LAUNCH("cross_entropy_forward_vec_kernel");
        return;
      }
      cross_entropy_forward_kernel<device_t<T>, C, I>
          <<<static_cast<unsigned>(rows), row_block_threads(vocab), 0, current_stream()>>>(
              row_loss.data<C>(), lse.data<C>(), device_data<T>(logits), targets.data<I>(), vocab,
              ignore_index);
      DSSM_CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
    });
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, const Tensor& grad_loss, double scale,
                            int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy backward", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_index(targets.dtype(), "cross_entropy backward", [&]<typename I>() {
      if ((vocab * int64_t{sizeof(T)}) % 16 == 0 &&
          aligned16({logits.raw_data(), dlogits.raw_data()})) {
        cross_entropy_backward_vec_kernel<device_t<T>, C, I>
            <<<static_cast<unsigned>(rows), kVectorThreads, 0, current_stream()>>>(
                device_data<T>(dlogits), device_data<T>(logits), targets.data<I>(), lse.data<C>(),
                grad_loss.data<C>(), static_cast<C>(scale), vocab, ignore_index);
        DSSM_CUDA_CHECK_LAUNCH("cross_entropy_backward_vec_kernel");
        return;
      }
      cross_entropy_backward_kernel<device_t<T>, C, I>
          <<<static_cast<unsigned>(rows), row_block_threads(vocab), 0, current_stream()>>>(
              device_data<T>(dlogits), device_data<T>(logits), targets.data<I>(), lse.data<C>(),
              grad_loss.data<C>(), static_cast<C>(scale), vocab, ignore_index);
      DSSM_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
    });
  });
}

}  // namespace dssm::cuda
