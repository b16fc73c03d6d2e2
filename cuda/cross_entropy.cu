// Fused cross-entropy over the rows of logits [N, V] (ops/cross_entropy.cpp), one block per row.
// Forward: a single online-softmax pass over the vocabulary row gives lse = m + log s, and the
// row's loss is lse - logits[target] (0 when the row is ignored). Backward: each element is
// written once, dlogits = (exp(logits - lse) - [v = target]) * g * scale.
#include "cuda/common.cuh"
#include "cuda/kernels_nn.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/shape.hpp"

namespace dssm::cuda {
namespace {

template <typename D, typename C, typename I>
__global__ void cross_entropy_forward_kernel(C* row_loss, C* lse, const D* logits, const I* targets,
                                             int64_t vocab, int64_t ignore_index) {
  const D* xr = logits + blockIdx.x * vocab;
  MaxSum<C> s;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) s = add_value(s, C(to_compute(xr[v])));
  s = block_max_sum(s);
  if (threadIdx.x == 0) {
    const C row_lse = s.max + log_c(s.sum);
    const int64_t t = targets[blockIdx.x];
    lse[blockIdx.x] = row_lse;
    row_loss[blockIdx.x] = t == ignore_index ? C(0) : row_lse - C(to_compute(xr[t]));
  }
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

}  // namespace

void cross_entropy_forward(const Tensor& row_loss, const Tensor& lse, const Tensor& logits,
                           const Tensor& targets, int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_index(targets.dtype(), "cross_entropy", [&]<typename I>() {
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
      cross_entropy_backward_kernel<device_t<T>, C, I>
          <<<static_cast<unsigned>(rows), row_block_threads(vocab), 0, current_stream()>>>(
              device_data<T>(dlogits), device_data<T>(logits), targets.data<I>(), lse.data<C>(),
              grad_loss.data<C>(), static_cast<C>(scale), vocab, ignore_index);
      DSSM_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
    });
  });
}

}  // namespace dssm::cuda
