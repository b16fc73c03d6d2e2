// softmax and log_softmax. The kernels work on the rows of a contiguous [R, C] matrix; a dim
// other than the last is first moved last with a transpose (and moved back after).
//   forward:  m = max_j x_j,  s = sum_j exp(x_j - m),
//             softmax y_i = exp(x_i - m) / s,    log_softmax y_i = x_i - m - log s
//   backward: softmax dx = y * (g - sum_j g_j y_j),   log_softmax dx = g - exp(y) * sum_j g_j
#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/cpu_vectorised.hpp"
#include "ops/registry.hpp"
#include "ops/softmax.hpp"

namespace dssm {
namespace {

const char* softmax_name(bool log) {
  return log ? "log_softmax" : "softmax";
}

// The f32 kernels (f32 and bf16 data), one row at a time: one pass over the row in memory for the
// max, then passes over the same row, now in L1 (a row of 4096 floats is 16 KB), for the sum of
// the exponentials and the output. exp is ops/cpu_vectorised_math.hpp's, with terms below
// FLT_MIN flushed to 0: they are terms of a sum >= 1 (the max contributes e^0).
template <typename T>
void cpu_softmax_f32(const Tensor& y, const Tensor& x, bool log) {
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  const T* in = x.data<T>();
  T* out = y.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > vec::kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = in + r * cols;
    T* yr = out + r * cols;
    const float m = vec::max(cols, [&](int64_t j) { return vec::load(xr, j); });
    const T* next = r + 1 < rows ? xr + cols : nullptr;  // prefetched by the pass in L1
    if (log) {
      // f32: x - m goes to y in the first pass (which so brings y's lines into L1 while the
      // exponentials keep the core busy), and the second subtracts log s there.
      const float total = vec::sum(
          cols,
          [&](int64_t j) {
            const float shifted = vec::load(xr, j) - m;  // exact near the max
            if constexpr (std::is_same_v<T, float>) yr[j] = shifted;
            return vec::exp_nonpositive_flushed(shifted);
          },
          next);
      const float log_total = vec::log(total);
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        if constexpr (std::is_same_v<T, float>) {
          yr[j] -= log_total;
        } else {
          vec::store(yr, j, (vec::load(xr, j) - m) - log_total);
        }
      }
    } else {
      // f32: the exponentials go to y (in L1), then are scaled there, one exp per element. bf16
      // recomputes them instead, so that each output is rounded once.
      const float total = vec::sum(
          cols,
          [&](int64_t j) {
            const float e = vec::exp_nonpositive_flushed(vec::load(xr, j) - m);
            if constexpr (std::is_same_v<T, float>) yr[j] = e;
            return e;
          },
          next);
      const float inverse = 1.0f / total;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        if constexpr (std::is_same_v<T, float>) {
          yr[j] *= inverse;
        } else {
          vec::store(yr, j, vec::exp_nonpositive_flushed(vec::load(xr, j) - m) * inverse);
        }
      }
    }
  }
}

template <typename T>
void cpu_softmax_backward_f32(const Tensor& dx, const Tensor& g, const Tensor& y, bool log) {
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  const T* pg = g.data<T>();
  const T* py = y.data<T>();
  T* pdx = dx.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > vec::kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = pg + r * cols;
    const T* yr = py + r * cols;
    T* dr = pdx + r * cols;
    if (log) {
      const float total = vec::sum(cols, [&](int64_t j) { return vec::load(gr, j); });
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        vec::store(dr, j, vec::load(gr, j) - vec::exp(vec::load(yr, j)) * total);
      }
    } else {
      const float dot =
          vec::sum(cols, [&](int64_t j) { return vec::load(gr, j) * vec::load(yr, j); });
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        vec::store(dr, j, vec::load(yr, j) * (vec::load(gr, j) - dot));
      }
    }
  }
}

void cpu_softmax(const Tensor& y, const Tensor& x, bool log) {
  dispatch_floating(x.dtype(), softmax_name(log), [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_same_v<C, float>) {
      return cpu_softmax_f32<T>(y, x, log);
    }
    // f64: the scalar definition.
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = in + r * cols;
      T* yr = out + r * cols;
      C m = -std::numeric_limits<C>::infinity();
      for (int64_t j = 0; j < cols; ++j) m = std::max(m, static_cast<C>(xr[j]));
      C s = 0;
      for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<C>(xr[j]) - m);
      if (log) {
        const C shift = m + std::log(s);
        for (int64_t j = 0; j < cols; ++j) yr[j] = static_cast<T>(static_cast<C>(xr[j]) - shift);
      } else {
        const C inv_s = C(1) / s;
        for (int64_t j = 0; j < cols; ++j) {
          yr[j] = static_cast<T>(std::exp(static_cast<C>(xr[j]) - m) * inv_s);
        }
      }
    }
  });
}

void cpu_softmax_backward(const Tensor& dx, const Tensor& g, const Tensor& y, bool log) {
  dispatch_floating(y.dtype(), softmax_name(log), [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_same_v<C, float>) {
      return cpu_softmax_backward_f32<T>(dx, g, y, log);
    }
    // f64: the scalar definition.
    const int64_t cols = y.size(-1), rows = y.numel() / cols;
    const T* pg = g.data<T>();
    const T* py = y.data<T>();
    T* pdx = dx.data<T>();
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* gr = pg + r * cols;
      const T* yr = py + r * cols;
      T* dr = pdx + r * cols;
      C dot = 0;  // sum(g) for log_softmax, sum(g * y) for softmax
      for (int64_t j = 0; j < cols; ++j) {
        dot += log ? static_cast<C>(gr[j]) : static_cast<C>(gr[j]) * static_cast<C>(yr[j]);
      }
      for (int64_t j = 0; j < cols; ++j) {
        const C gj = static_cast<C>(gr[j]), yj = static_cast<C>(yr[j]);
        dr[j] = static_cast<T>(log ? gj - std::exp(yj) * dot : yj * (gj - dot));
      }
    }
  });
}

Tensor softmax_last_dim(const Tensor& input, bool log) {
  const Tensor x = input.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) {
    if (x.is_cuda()) {
      cuda::softmax_forward(y, x, log);
    } else {
      cpu_softmax(y, x, log);
    }
  }
  record(softmax_name(log), {input}, {y}, [saved = y.detach(), log](const BackwardArgs& args) {
    const Tensor g = args.grad().contiguous();
    Tensor dx = Tensor::empty(saved.shape(), saved.dtype(), saved.device());
    if (saved.numel() > 0) {
      if (saved.is_cuda()) {
        cuda::softmax_backward(dx, g, saved, log);
      } else {
        cpu_softmax_backward(dx, g, saved, log);
      }
    }
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor softmax_along(const Tensor& x, int64_t dim, bool log) {
  const char* name = softmax_name(log);
  DSSM_CHECK(is_floating(x.dtype()), name, "expected a floating tensor, got {}", describe(x));
  if (x.dim() == 0) return softmax_along(x.reshape({1}), 0, log).reshape({});
  const int64_t d = wrap_dim(dim, x.dim(), name);
  if (d != x.dim() - 1) return softmax_last_dim(x.transpose(d, -1), log).transpose(d, -1);
  return softmax_last_dim(x, log);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_along(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_along(x, dim, true);
}

namespace {

GradcheckCase softmax_case(const char* name, Shape shape, int64_t dim, bool log) {
  return {
      .name = name,
      .make_inputs = [shape](Generator& g) { return std::vector<Tensor>{random_normal(g, shape)}; },
      .run =
          [dim, log](const std::vector<Tensor>& in) {
            return log ? log_softmax(in[0], dim) : softmax(in[0], dim);
          }};
}

const OpRegistration kSoftmax{softmax_case("softmax", {3, 5}, -1, false)};
const OpRegistration kSoftmaxDim0{softmax_case("softmax_dim0", {4, 3, 2}, 0, false)};
const OpRegistration kLogSoftmax{softmax_case("log_softmax", {3, 5}, -1, true)};
const OpRegistration kLogSoftmaxDim1{softmax_case("log_softmax_dim1", {2, 4, 3}, 1, true)};

}  // namespace
}  // namespace dssm
