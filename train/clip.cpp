#include "train/clip.hpp"

#include <algorithm>
#include <cmath>

#include "cuda/kernels_train.hpp"
#include "tensor/error.hpp"

namespace dssm::train {
namespace {

// sum x^2 over n elements: f64 partial sums over blocks of kBlock computed in parallel, then
// added in block order.
template <typename T>
double sum_of_squares_cpu(const T* x, int64_t n) {
  constexpr int64_t kBlock = 8192;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    double sum = 0.0;
    for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      const double v = static_cast<double>(static_cast<compute_t<T>>(x[i]));
      sum += v * v;
    }
    partial[static_cast<size_t>(b)] = sum;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

double global_grad_norm(const std::vector<Tensor>& parameters) {
  std::vector<Tensor> cuda_grads;
  double total = 0.0;
  for (const Tensor& p : parameters) {
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const Tensor g = grad.contiguous();
    if (g.is_cuda()) {
      DSSM_CHECK(g.dtype() == DType::f32, "global_grad_norm", "expected f32 gradients, got {}",
                 describe(g));
      cuda_grads.push_back(g);
      continue;
    }
    total += dispatch_floating(g.dtype(), "global_grad_norm", [&]<typename T>() {
      return sum_of_squares_cpu<T>(g.data<T>(), g.numel());
    });
  }
  if (!cuda_grads.empty()) total += cuda::sum_of_squares(cuda_grads);
  return std::sqrt(total);
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (norm + 1e-6));
}

}  // namespace dssm::train
