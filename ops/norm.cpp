// RMSNorm, LayerNorm and RetNet's group RMSNorm share one fused kernel pair. Each row of the last
// dim (width D) is cut into `groups` segments of S = D / groups (one segment when groups = 1);
// for each segment, with means taken over its S elements:
//   mu   = mean(x) for LayerNorm ("centred"), 0 for the RMS norms
//   rstd = 1 / sqrt(mean((x - mu)^2) + eps),   xhat = (x - mu) * rstd,   y = xhat * w + b
// (w = 1 and b = 0 where absent; w and b are indexed by the column in the full row).
// Backward, with gw = g * w:
//   dx = rstd * (gw - mean(gw) [centred only] - xhat * mean(gw * xhat))
//   dw = sum over segments of g * xhat,   db = sum over segments of g
// mu and rstd are saved in the compute type (f32 for bf16); x is saved, xhat recomputed.
#include <omp.h>

#include <cmath>
#include <vector>

#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/cpu_vectorised.hpp"
#include "ops/norm.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"

namespace dssm {
namespace {

// The f32 kernels (f32 and bf16 data): the same passes as the scalar loops below, as vectorised
// loops (the scalar loops' float reductions do not vectorise without -ffast-math). Each segment
// is read from memory once; the later passes over it hit L1 (a row of 4096 floats is 16 KB).
// with_column(p, col, absent, fn) calls fn with a reader of column col + j of the weight or bias
// p, or of the constant `absent` where there is none (1 for weights, 0 for biases).
template <typename T, typename Fn>
void with_column(const T* p, int64_t col, float absent, Fn&& fn) {
  if (p) {
    fn([=](int64_t j) { return vec::load(p, col + j); });
  } else {
    fn([=](int64_t) { return absent; });
  }
}

// Mean and (population) variance of f(0 .. n-1) in one pass: Welford's update on kLanes
// independent lanes (lane k takes the terms k, k + kLanes, ...; four AVX-512 registers, so that
// the updates do not wait on each other), then the lanes merged with Chan et al.'s rule for
// combining two partial results. Unlike the sum of squares minus the squared sum, nothing
// cancels when the mean is large against the spread, and unlike a mean pass followed by a
// variance pass, the row is read once: this pass streams it from memory and the output pass
// reads it from L1.
struct MeanVariance {
  float mean, variance;
};
template <typename F>
MeanVariance mean_and_variance(int64_t n, F f) {
  if (n == 0) return {0.0f, 0.0f};
  constexpr int64_t kLanes = 64;
  // The terms are taken less the first one, so that the lanes' rounding is relative to the
  // spread of the terms rather than to their size (a row of values near 100 with a spread of 1).
  const float pivot = f(0);
  float mean[kLanes] = {}, m2[kLanes] = {};
  const int64_t full = n / kLanes;
  for (int64_t step = 0; step < full; ++step) {
    const float inverse_count = 1.0f / static_cast<float>(step + 1);
#pragma omp simd
    for (int64_t k = 0; k < kLanes; ++k) {
      const float x = f(step * kLanes + k) - pivot, d = x - mean[k];
      mean[k] += d * inverse_count;
      m2[k] += d * (x - mean[k]);
    }
  }
  // The last n % kLanes terms, one more in each of the first lanes.
  const int64_t rest = n - full * kLanes;
  const float inverse_more = 1.0f / static_cast<float>(full + 1);
  for (int64_t k = 0; k < rest; ++k) {
    const float x = f(full * kLanes + k) - pivot, d = x - mean[k];
    mean[k] += d * inverse_more;
    m2[k] += d * (x - mean[k]);
  }
  // Merge lane by lane: (count, mean, m2) of the lanes so far with lane k's.
  double count = 0.0;
  float total_mean = 0.0f, total_m2 = 0.0f;
  for (int64_t k = 0; k < kLanes; ++k) {
    const double lane_count = static_cast<double>(full + (k < rest ? 1 : 0));
    if (lane_count == 0.0) continue;
    const double merged = count + lane_count;
    const float d = mean[k] - total_mean;
    total_mean += d * static_cast<float>(lane_count / merged);
    total_m2 += m2[k] + d * d * static_cast<float>(count * lane_count / merged);
    count = merged;
  }
  return {pivot + total_mean, total_m2 / static_cast<float>(n)};
}

template <typename T>
void cpu_norm_forward_f32(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                          const Tensor& weight, const Tensor& bias, int64_t groups, double eps) {
  const int64_t width = x.size(-1), segments = x.numel() / width * groups;
  const int64_t seg = width / groups;
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const T* pb = bias.defined() ? bias.data<T>() : nullptr;
  const T* px = x.data<T>();
  float* pmean = mean.defined() ? mean.data<float>() : nullptr;
  float* prstd = rstd.data<float>();
  T* py = y.data<T>();
  const float n = static_cast<float>(seg), epsilon = static_cast<float>(eps);
#pragma omp parallel for schedule(static) if (x.numel() > vec::kParallelMin)
  for (int64_t s = 0; s < segments; ++s) {
    const T* xs = px + s * seg;
    T* ys = py + s * seg;
    // One pass over the segment from memory: LayerNorm's mean and variance, the RMS norms' mean
    // square. f32 stages x in y meanwhile, so that y's lines come into L1 during this pass and
    // the output pass reads x there.
    constexpr bool kStaged = std::is_same_v<T, float>;
    const auto staged_x = [&](int64_t j) {
      const float v = vec::load(xs, j);
      if constexpr (kStaged) ys[j] = v;
      return v;
    };
    float mu = 0.0f, variance = 0.0f;
    if (pmean) {
      const MeanVariance stats = mean_and_variance(seg, staged_x);
      mu = stats.mean, variance = stats.variance;
      pmean[s] = mu;
    } else {
      variance = vec::sum(seg,
                          [&](int64_t j) {
                            const float v = staged_x(j);
                            return v * v;
                          }) /
                 n;
    }
    const float r = 1.0f / std::sqrt(variance + epsilon);
    const T* source = kStaged ? ys : xs;
    prstd[s] = r;
    const int64_t col = (s % groups) * seg;  // the segment's first column, for w and b
    with_column(pw, col, 1.0f, [&](auto w) {
      with_column(pb, col, 0.0f, [&](auto b) {
#pragma omp simd
        for (int64_t j = 0; j < seg; ++j) {
          vec::store(ys, j, (vec::load(source, j) - mu) * r * w(j) + b(j));
        }
      });
    });
  }
}

template <typename T>
void cpu_norm_backward_f32(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                           const Tensor& g, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, int64_t groups) {
  const int64_t width = x.size(-1), segments = x.numel() / width * groups;
  const int64_t seg = width / groups;
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const T* px = x.data<T>();
  const T* pg = g.data<T>();
  const float* pmean = mean.defined() ? mean.data<float>() : nullptr;
  const float* prstd = rstd.data<float>();
  T* pdx = dx.data<T>();
  const float n = static_cast<float>(seg);
  const int threads = omp_get_max_threads();
  std::vector<float> dw_parts(dweight.defined() ? threads * width : 0, 0.0f);
  std::vector<float> db_parts(dbias.defined() ? threads * width : 0, 0.0f);
#pragma omp parallel if (x.numel() > vec::kParallelMin)
  {
    float* dw_mine = dw_parts.empty() ? nullptr : dw_parts.data() + omp_get_thread_num() * width;
    float* db_mine = db_parts.empty() ? nullptr : db_parts.data() + omp_get_thread_num() * width;
#pragma omp for schedule(static)
    for (int64_t s = 0; s < segments; ++s) {
      const T* xs = px + s * seg;
      const T* gs = pg + s * seg;
      T* ds = pdx + s * seg;
      const int64_t col = (s % groups) * seg;
      const float mu = pmean ? pmean[s] : 0.0f, r = prstd[s];
      with_column(pw, col, 1.0f, [&](auto w) {
        const auto xhat = [&](int64_t j) { return (vec::load(xs, j) - mu) * r; };
        const auto gw = [&](int64_t j) { return vec::load(gs, j) * w(j); };
        const float mean_gw = pmean ? vec::sum(seg, gw) / n : 0.0f;
        const float mean_gw_xhat = vec::sum(seg, [&](int64_t j) { return gw(j) * xhat(j); }) / n;
#pragma omp simd
        for (int64_t j = 0; j < seg; ++j) {
          vec::store(ds, j, r * (gw(j) - mean_gw - xhat(j) * mean_gw_xhat));
        }
      });
      if (dw_mine) {
#pragma omp simd
        for (int64_t j = 0; j < seg; ++j) {
          dw_mine[col + j] += vec::load(gs, j) * ((vec::load(xs, j) - mu) * r);
        }
      }
      if (db_mine) {
#pragma omp simd
        for (int64_t j = 0; j < seg; ++j) db_mine[col + j] += vec::load(gs, j);
      }
    }
  }
  auto reduce_parts = [&](const std::vector<float>& parts, const Tensor& out) {
    T* po = out.data<T>();
    for (int64_t j = 0; j < width; ++j) {
      float total = 0;
      for (int t = 0; t < threads; ++t) total += parts[t * width + j];
      po[j] = static_cast<T>(total);
    }
  };
  if (dweight.defined()) reduce_parts(dw_parts, dweight);
  if (dbias.defined()) reduce_parts(db_parts, dbias);
}

void cpu_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                      const Tensor& weight, const Tensor& bias, int64_t groups, double eps) {
  dispatch_floating(x.dtype(), "norm", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_same_v<C, float>) {
      return cpu_norm_forward_f32<T>(y, mean, rstd, x, weight, bias, groups, eps);
    }
    // f64: the scalar definition.
    const int64_t width = x.size(-1), segments = x.numel() / width * groups;
    const int64_t seg = width / groups;
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    C* pmean = mean.defined() ? mean.data<C>() : nullptr;
    C* prstd = rstd.data<C>();
    T* py = y.data<T>();
#pragma omp parallel for if (x.numel() > 32768)
    for (int64_t s = 0; s < segments; ++s) {
      const T* xs = px + s * seg;
      T* ys = py + s * seg;
      const int64_t col = (s % groups) * seg;  // the segment's first column, for w and b
      C mu = 0;
      if (pmean) {
        for (int64_t j = 0; j < seg; ++j) mu += static_cast<C>(xs[j]);
        mu /= static_cast<C>(seg);
        pmean[s] = mu;
      }
      C var = 0;
      for (int64_t j = 0; j < seg; ++j) {
        const C d = static_cast<C>(xs[j]) - mu;
        var += d * d;
      }
      const C r = C(1) / std::sqrt(var / static_cast<C>(seg) + static_cast<C>(eps));
      prstd[s] = r;
      for (int64_t j = 0; j < seg; ++j) {
        C v = (static_cast<C>(xs[j]) - mu) * r;
        if (pw) v *= static_cast<C>(pw[col + j]);
        if (pb) v += static_cast<C>(pb[col + j]);
        ys[j] = static_cast<T>(v);
      }
    }
  });
}

// One pass over the segments for dx; dw and db are summed per thread (each thread its own
// partial row of width D), then the partials are added in thread order.
void cpu_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& g, const Tensor& x, const Tensor& weight, const Tensor& mean,
                       const Tensor& rstd, int64_t groups) {
  dispatch_floating(x.dtype(), "norm backward", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_same_v<C, float>) {
      return cpu_norm_backward_f32<T>(dx, dweight, dbias, g, x, weight, mean, rstd, groups);
    }
    // f64: the scalar definition.
    const int64_t width = x.size(-1), segments = x.numel() / width * groups;
    const int64_t seg = width / groups;
    const T* px = x.data<T>();
    const T* pg = g.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const C* pmean = mean.defined() ? mean.data<C>() : nullptr;
    const C* prstd = rstd.data<C>();
    T* pdx = dx.data<T>();
    const int threads = omp_get_max_threads();
    std::vector<C> dw_parts(dweight.defined() ? threads * width : 0, C(0));
    std::vector<C> db_parts(dbias.defined() ? threads * width : 0, C(0));
#pragma omp parallel if (x.numel() > 32768)
    {
      C* dw_mine = dw_parts.empty() ? nullptr : dw_parts.data() + omp_get_thread_num() * width;
      C* db_mine = db_parts.empty() ? nullptr : db_parts.data() + omp_get_thread_num() * width;
#pragma omp for
      for (int64_t s = 0; s < segments; ++s) {
        const T* xs = px + s * seg;
        const T* gs = pg + s * seg;
        T* ds = pdx + s * seg;
        const int64_t col = (s % groups) * seg;
        const C mu = pmean ? pmean[s] : C(0), r = prstd[s];
        C sum_gw = 0, sum_gw_xhat = 0;
        for (int64_t j = 0; j < seg; ++j) {
          const C xhat = (static_cast<C>(xs[j]) - mu) * r;
          const C gw = static_cast<C>(gs[j]) * (pw ? static_cast<C>(pw[col + j]) : C(1));
          sum_gw += gw;
          sum_gw_xhat += gw * xhat;
        }
        const C mean_gw = pmean ? sum_gw / static_cast<C>(seg) : C(0);
        const C mean_gw_xhat = sum_gw_xhat / static_cast<C>(seg);
        for (int64_t j = 0; j < seg; ++j) {
          const C gj = static_cast<C>(gs[j]);
          const C xhat = (static_cast<C>(xs[j]) - mu) * r;
          const C gw = gj * (pw ? static_cast<C>(pw[col + j]) : C(1));
          ds[j] = static_cast<T>(r * (gw - mean_gw - xhat * mean_gw_xhat));
          if (dw_mine) dw_mine[col + j] += gj * xhat;
          if (db_mine) db_mine[col + j] += gj;
        }
      }
    }
    auto reduce_parts = [&](const std::vector<C>& parts, const Tensor& out) {
      T* po = out.data<T>();
      for (int64_t j = 0; j < width; ++j) {
        C total = 0;
        for (int t = 0; t < threads; ++t) total += parts[t * width + j];
        po[j] = static_cast<T>(total);
      }
    };
    if (dweight.defined()) reduce_parts(dw_parts, dweight);
    if (dbias.defined()) reduce_parts(db_parts, dbias);
  });
}

void check_param(const Tensor& p, const char* role, const Tensor& x, const char* op) {
  if (!p.defined()) return;
  DSSM_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), op, "expected {} of shape [{}], got {}", role,
             x.size(-1), describe(p));
  DSSM_CHECK(p.dtype() == x.dtype() && p.device() == x.device(), op,
             "{} {} must match the dtype and device of x {}", role, describe(p), describe(x));
}

Tensor row_norm(const char* op, const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                int64_t groups, bool centred, double eps) {
  DSSM_CHECK(x_in.dim() >= 1 && is_floating(x_in.dtype()), op,
             "expected a floating tensor with at least one dim, got {}", describe(x_in));
  DSSM_CHECK(groups > 0 && x_in.size(-1) % groups == 0 && x_in.size(-1) > 0, op,
             "the last dim ({}) of {} must be a positive multiple of groups ({})", x_in.size(-1),
             describe(x_in), groups);
  DSSM_CHECK(eps >= 0, op, "expected eps >= 0, got {}", eps);
  check_param(weight_in, "weight", x_in, op);
  check_param(bias_in, "bias", x_in, op);
  const Tensor x = x_in.detach().contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.detach().contiguous() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.detach().contiguous() : Tensor();
  const int64_t segments = x.numel() / x.size(-1) * groups;
  const DType stat_dtype = compute_dtype(x.dtype());
  const Tensor mean = centred ? Tensor::empty({segments}, stat_dtype, x.device()) : Tensor();
  const Tensor rstd = Tensor::empty({segments}, stat_dtype, x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) {
    if (x.is_cuda()) {
      cuda::norm_forward(y, mean, rstd, x, weight, bias, groups, eps);
    } else {
      cpu_norm_forward(y, mean, rstd, x, weight, bias, groups, eps);
    }
  }
  record(op, {x_in, weight_in, bias_in}, {y},
         [x, weight, mean, rstd, groups, has_bias = bias.defined()](const BackwardArgs& args) {
           const Tensor g = args.grad().contiguous();
           Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
           const Shape param_shape{x.size(-1)};
           Tensor dw = args.needs(1) ? Tensor::empty(param_shape, x.dtype(), x.device()) : Tensor();
           Tensor db = args.needs(2) && has_bias ? Tensor::empty(param_shape, x.dtype(), x.device())
                                                 : Tensor();
           if (x.numel() == 0) {
             if (dw.defined()) dw.fill_(0.0);
             if (db.defined()) db.fill_(0.0);
           } else if (x.is_cuda()) {
             cuda::norm_backward(dx, dw, db, g, x, weight, mean, rstd, groups);
           } else {
             cpu_norm_backward(dx, dw, db, g, x, weight, mean, rstd, groups);
           }
           return std::vector<Tensor>{args.needs(0) ? dx : Tensor(), dw, db};
         });
  return y;
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  DSSM_CHECK(weight.defined(), "rms_norm",
             "expected a weight of shape [{}], got an undefined tensor", x.size(-1));
  return row_norm("rms_norm", x, weight, Tensor(), 1, false, eps);
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  DSSM_CHECK(weight.defined(), "layer_norm",
             "expected a weight of shape [{}], got an undefined tensor", x.size(-1));
  return row_norm("layer_norm", x, weight, bias, 1, true, eps);
}

Tensor group_rms_norm(const Tensor& x, int64_t groups, double eps, const Tensor& weight) {
  return row_norm("group_rms_norm", x, weight, Tensor(), groups, false, eps);
}

namespace {

// Weights near 1 but not equal, so that a mix-up of w and 1 shows.
Tensor random_weight(Generator& g, int64_t d) {
  return random_uniform(g, {d}, 0.5, 1.5);
}

const OpRegistration kRmsNorm{
    {.name = "rms_norm",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 6}), random_weight(g, 6)};
         },
     .run = [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1], 1e-5); }}};
const OpRegistration kLayerNorm{
    {.name = "layer_norm",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 5}), random_weight(g, 5),
                                      random_normal(g, {5})};
         },
     .run = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); }}};
const OpRegistration kLayerNormNoBias{
    {.name = "layer_norm_no_bias",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 5}), random_weight(g, 5)};
         },
     .run =
         [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 1e-5); }}};
const OpRegistration kGroupRmsNorm{
    {.name = "group_rms_norm",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 2, 6}), random_weight(g, 6)};
         },
     .run = [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 3, 1e-5, in[1]); }}};
const OpRegistration kGroupRmsNormNoWeight{
    {.name = "group_rms_norm_no_weight",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 8})};
         },
     .run = [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 2, 1e-5); }}};

}  // namespace
}  // namespace dssm
