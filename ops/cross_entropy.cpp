// Cross-entropy of next-token prediction, fused with its log-softmax:
//   lse_n  = logsumexp_v logits[n, v]  (= m + log sum_v exp(logits[n, v] - m), m the row max)
//   loss   = (1 / count) * sum_{n not ignored} (lse_n - logits[n, t_n])
//   dlogits[n, v] = (exp(logits[n, v] - lse_n) - [v = t_n]) * g / count   (0 on ignored rows)
// Forward keeps only lse (one number per row) besides the inputs; backward writes the gradient
// straight from logits and lse, so no second logits-sized buffer is ever made.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/cpu_exp_sum.hpp"
#include "ops/cpu_vectorised.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"

namespace dssm {
namespace {

// The f32 kernels (f32 and bf16 logits), one row at a time with the vectorised exp and log of
// ops/cpu_vectorised_math.hpp: forward reads each row from memory once for its max, then again
// from L1 for the sum of exponentials (terms below FLT_MIN flushed to 0: the sum is >= 1), and
// row n's loss is lse - x[t] with lse = m + log(sum). f64 runs the scalar loops.
template <typename T, typename I>
void cross_entropy_row_loss(float* loss, float* lse, const T* xr, const I* t, int64_t n, float m,
                            float total, int64_t ignore_index) {
  lse[n] = m + vec::log(total);
  loss[n] = t[n] == ignore_index ? 0.0f : lse[n] - vec::load(xr, t[n]);
}

#ifdef __AVX512F__
// f32 logits with AVX-512 (ops/cpu_exp_sum.hpp): each thread takes a contiguous part of the rows;
// the loop that sums a row's exponentials in L1 also takes the max of the next row, read from
// memory meanwhile, so the memory is busy while the exponentials run.
template <typename I>
void cpu_cross_entropy_forward_avx512(float* loss, float* lse, const float* x, const I* t,
                                      int64_t rows, int64_t vocab, int64_t ignore_index) {
#pragma omp parallel if (rows * vocab > vec::kParallelMin)
  {
    const int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();
    const int64_t begin = rows * part / parts, end = rows * (part + 1) / parts;
    float m = begin < end ? vec::max(vocab, [&](int64_t v) { return x[begin * vocab + v]; }) : 0;
    for (int64_t n = begin; n < end; ++n) {
      const float* xr = x + n * vocab;
      const float* next = n + 1 < end ? xr + vocab : xr;  // the last row's own max, unused
      const vec::ExpSumAndNextMax s = vec::exp_sum_and_next_max(xr, m, next, vocab);
      cross_entropy_row_loss(loss, lse, xr, t, n, m, s.sum, ignore_index);
      m = s.next_max;
    }
  }
}
#endif

template <typename T, typename I>
void cpu_cross_entropy_forward_f32(float* loss, float* lse, const T* x, const I* t, int64_t rows,
                                   int64_t vocab, int64_t ignore_index) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    return cpu_cross_entropy_forward_avx512(loss, lse, x, t, rows, vocab, ignore_index);
  }
#endif
#pragma omp parallel for schedule(static) if (rows * vocab > vec::kParallelMin)
  for (int64_t n = 0; n < rows; ++n) {
    const T* xr = x + n * vocab;
    const float m = vec::max(vocab, [&](int64_t v) { return vec::load(xr, v); });
    const float total = vec::sum(
        vocab, [&](int64_t v) { return vec::exp_nonpositive_flushed(vec::load(xr, v) - m); },
        n + 1 < rows ? xr + vocab : nullptr);  // the next row, read while this one is in L1
    cross_entropy_row_loss(loss, lse, xr, t, n, m, total, ignore_index);
  }
}

template <typename T, typename I>
void cpu_cross_entropy_backward_f32(T* dx, const T* x, const I* t, const float* lse, float factor,
                                    int64_t rows, int64_t vocab, int64_t ignore_index) {
#pragma omp parallel for schedule(static) if (rows * vocab > vec::kParallelMin)
  for (int64_t n = 0; n < rows; ++n) {
    const T* xr = x + n * vocab;
    T* dr = dx + n * vocab;
    if (t[n] == ignore_index) {
#pragma omp simd
      for (int64_t v = 0; v < vocab; ++v) vec::store(dr, v, 0.0f);
      continue;
    }
    const int64_t target = t[n];
    const float shift = lse[n];
#pragma omp simd
    for (int64_t v = 0; v < vocab; ++v) {
      const float p = vec::exp(vec::load(xr, v) - shift);
      vec::store(dr, v, (p - (v == target ? 1.0f : 0.0f)) * factor);
    }
  }
}

void cpu_cross_entropy_forward(const Tensor& row_loss, const Tensor& lse, const Tensor& logits,
                               const Tensor& targets, int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<typename T>() {
    using C = compute_t<T>;
    const T* x = logits.data<T>();
    C* loss = row_loss.data<C>();
    C* plse = lse.data<C>();
    dispatch_index(targets.dtype(), "cross_entropy", [&]<typename I>() {
      const I* t = targets.data<I>();
      if constexpr (std::is_same_v<C, float>) {
        return cpu_cross_entropy_forward_f32(loss, plse, x, t, rows, vocab, ignore_index);
      }
#pragma omp parallel for if (rows * vocab > 32768)
      for (int64_t n = 0; n < rows; ++n) {
        const T* xr = x + n * vocab;
        C m = -std::numeric_limits<C>::infinity();
        for (int64_t v = 0; v < vocab; ++v) m = std::max(m, static_cast<C>(xr[v]));
        C s = 0;
        for (int64_t v = 0; v < vocab; ++v) s += std::exp(static_cast<C>(xr[v]) - m);
        plse[n] = m + std::log(s);
        loss[n] = t[n] == ignore_index ? C(0) : plse[n] - static_cast<C>(xr[t[n]]);
      }
    });
  });
}

void cpu_cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                                const Tensor& lse, double g_times_scale, int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy backward", [&]<typename T>() {
    using C = compute_t<T>;
    const T* x = logits.data<T>();
    const C* plse = lse.data<C>();
    T* dx = dlogits.data<T>();
    const C factor = static_cast<C>(g_times_scale);
    dispatch_index(targets.dtype(), "cross_entropy backward", [&]<typename I>() {
      const I* t = targets.data<I>();
      if constexpr (std::is_same_v<C, float>) {
        return cpu_cross_entropy_backward_f32(dx, x, t, plse, factor, rows, vocab, ignore_index);
      }
#pragma omp parallel for if (rows * vocab > 32768)
      for (int64_t n = 0; n < rows; ++n) {
        const T* xr = x + n * vocab;
        T* dr = dx + n * vocab;
        const bool ignored = t[n] == ignore_index;
        for (int64_t v = 0; v < vocab; ++v) {
          const C p = std::exp(static_cast<C>(xr[v]) - plse[n]);
          dr[v] = static_cast<T>(ignored ? C(0) : (p - C(v == t[n])) * factor);
        }
      }
    });
  });
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, int64_t ignore_index) {
  DSSM_CHECK(logits_in.dim() == 2 && is_floating(logits_in.dtype()), "cross_entropy",
             "expected floating logits [N, V], got {}", describe(logits_in));
  DSSM_CHECK(targets_in.dim() == 1 &&
                 (targets_in.dtype() == DType::i32 || targets_in.dtype() == DType::i64),
             "cross_entropy", "expected targets [N] of i32 or i64, got {}", describe(targets_in));
  DSSM_CHECK(targets_in.size(0) == logits_in.size(0), "cross_entropy",
             "logits {} and targets {} differ in N", describe(logits_in), describe(targets_in));
  DSSM_CHECK(targets_in.device() == logits_in.device(), "cross_entropy",
             "device mismatch: logits {} vs targets {}", describe(logits_in), describe(targets_in));
  const int64_t rows = logits_in.size(0), vocab = logits_in.size(1);
  DSSM_CHECK(vocab > 0, "cross_entropy", "expected at least one class (V > 0), got logits {}",
             describe(logits_in));
  const IndexScan scan = scan_indices(targets_in, vocab, ignore_index);
  DSSM_CHECK(scan.first_bad < 0, "cross_entropy",
             "target {} at row {} is outside [0, {}) and is not ignore_index ({})", scan.bad_value,
             scan.first_bad, vocab, ignore_index);
  const int64_t count = rows - scan.ignored;
  const double scale = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;

  const Tensor logits = logits_in.detach().contiguous(), targets = targets_in.contiguous();
  const DType loss_dtype = compute_dtype(logits.dtype());
  const Tensor lse = Tensor::empty({rows}, loss_dtype, logits.device());
  Tensor loss;
  if (count == 0) {
    loss = Tensor::zeros({}, loss_dtype, logits.device());
  } else {
    const Tensor row_loss = Tensor::empty({rows}, loss_dtype, logits.device());
    if (logits.is_cuda()) {
      cuda::cross_entropy_forward(row_loss, lse, logits, targets, ignore_index);
    } else {
      cpu_cross_entropy_forward(row_loss, lse, logits, targets, ignore_index);
    }
    loss = mul_scalar(sum(row_loss), scale);
  }
  record("cross_entropy", {logits_in}, {loss},
         [logits, targets, lse, scale, ignore_index](const BackwardArgs& args) {
           Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
           if (scale == 0) {
             dlogits.fill_(0.0);
           } else if (logits.is_cuda()) {
             const Tensor g = args.grad().to(lse.dtype()).contiguous();
             cuda::cross_entropy_backward(dlogits, logits, targets, lse, g, scale, ignore_index);
           } else {
             cpu_cross_entropy_backward(dlogits, logits, targets, lse, args.grad().item() * scale,
                                        ignore_index);
           }
           return std::vector<Tensor>{dlogits};
         });
  return loss;
}

namespace {

// Row 1 is ignored: it must get a zero gradient and not count in the mean.
const OpRegistration kCrossEntropy{
    {.name = "cross_entropy",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {4, 5}),
                                      Tensor::from_vector<int64_t>({2, -100, 0, 4}, {4})};
         },
     .run = [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); }}};
const OpRegistration kCrossEntropyI32{
    {.name = "cross_entropy_i32",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 6}),
                                      Tensor::from_vector<int32_t>({5, 1, 7}, {3})};
         },
     .run = [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 7); }}};

}  // namespace
}  // namespace dssm
