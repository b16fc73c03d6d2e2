// Depthwise causal conv1d (see the header): forward, backward, one-token step, CPU kernels.
// With p_t = bias + sum_k w_k x_{t-W+1+k} (the pre-activation) and g'_t = dy_t act'(p_t):
//   dx_s = sum_k w_k g'_{s+W-1-k},   dw_k = sum_{b,t} g'_t x_{t-W+1+k},   dbias = sum_{b,t} g'_t.
// Backward recomputes p from x (cheaper than saving it: W multiply-adds per element).
#include "ops/causal_conv1d.hpp"

#include <fmt/format.h>

#include <mutex>

#include "autograd/graph.hpp"
#include "cuda/kernels_ssm.hpp"
#include "ops/elementwise_math.hpp"
#include "ops/host_fallback.hpp"
#include "ops/registry.hpp"
#include "ops/selective_scan.hpp"

namespace dssm {
namespace {

// Checks x (3-D, or 2-D for a step), weight and bias; returns weight and bias contiguous.
std::pair<Tensor, Tensor> checked_filter(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         const char* op) {
  DSSM_CHECK(x.defined() && is_floating(x.dtype()), op, "expected a floating x, got {}",
             x.defined() ? describe(x) : "none");
  const int64_t channels = x.size(1);
  DSSM_CHECK(
      weight.defined() && weight.dim() == 2 && weight.size(0) == channels && weight.size(1) >= 1,
      op, "expected weight of shape [{}, width >= 1], got {}", channels,
      weight.defined() ? describe(weight) : "none");
  DSSM_CHECK(weight.dtype() == x.dtype() && weight.device() == x.device(), op,
             "expected weight to match x ({}), got {}", describe(x), describe(weight));
  if (bias.defined()) {
    DSSM_CHECK(
        bias.shape() == Shape{channels} && bias.dtype() == x.dtype() && bias.device() == x.device(),
        op, "expected bias {}[{}] on {}, got {}", dtype_name(x.dtype()), channels, x.device().str(),
        describe(bias));
  }
  return {weight.detach().contiguous(), bias.defined() ? bias.detach().contiguous() : bias};
}

template <typename C>
C activate(C p, bool silu) {
  return silu ? math::unary_forward<UnaryOp::silu, C>(p, C(0)) : p;
}

// ---- CPU kernels -------------------------------------------------------------------------------

template <typename T>
void cpu_conv_forward(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, bool silu,
                      const Tensor& y_out) {
  using C = compute_t<T>;
  const int64_t rows = x_in.size(0) * x_in.size(1), channels = x_in.size(1), L = x_in.size(2);
  const int64_t W = w_in.size(1);
  const T *x = x_in.data<T>(), *w = w_in.data<T>();
  const T* bias = b_in.defined() ? b_in.data<T>() : nullptr;
  T* y = y_out.data<T>();
#pragma omp parallel for if (rows * L * W > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r % channels;
    for (int64_t t = 0; t < L; ++t) {
      C p = bias ? static_cast<C>(bias[c]) : C(0);
      for (int64_t k = std::max<int64_t>(0, W - 1 - t); k < W; ++k) {
        p += static_cast<C>(w[c * W + k]) * static_cast<C>(x[r * L + t - (W - 1) + k]);
      }
      y[r * L + t] = static_cast<T>(activate(p, silu));
    }
  }
}

template <typename T>
void cpu_conv_backward(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, bool silu,
                       const Tensor& gy_in, const Tensor& dx_out, const Tensor& dw_out,
                       const Tensor& db_out) {
  using C = compute_t<T>;
  const int64_t batch = x_in.size(0), channels = x_in.size(1), L = x_in.size(2);
  const int64_t W = w_in.size(1);
  const T *x = x_in.data<T>(), *w = w_in.data<T>(), *gy = gy_in.data<T>();
  const T* bias = b_in.defined() ? b_in.data<T>() : nullptr;
  T* dx = dx_out.data<T>();
  C* dw = dw_out.data<C>();
  C* db = db_out.defined() ? db_out.data<C>() : nullptr;
  // One thread per channel: dw[c, :] and db[c] have a single writer.
#pragma omp parallel for if (batch * channels * L * W > 32768)
  for (int64_t c = 0; c < channels; ++c) {
    std::vector<C> gp(static_cast<size_t>(L));  // dL/dp_t for one row
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t row = (b * channels + c) * L;
      for (int64_t t = 0; t < L; ++t) {
        C p = bias ? static_cast<C>(bias[c]) : C(0);
        for (int64_t k = std::max<int64_t>(0, W - 1 - t); k < W; ++k) {
          p += static_cast<C>(w[c * W + k]) * static_cast<C>(x[row + t - (W - 1) + k]);
        }
        const C act_grad = silu ? math::unary_derivative<UnaryOp::silu, C>(p, C(0), C(0)) : C(1);
        gp[t] = static_cast<C>(gy[row + t]) * act_grad;
        if (db) db[c] += gp[t];
        for (int64_t k = std::max<int64_t>(0, W - 1 - t); k < W; ++k) {
          dw[c * W + k] += gp[t] * static_cast<C>(x[row + t - (W - 1) + k]);
        }
      }
      for (int64_t s = 0; s < L; ++s) {
        C total = 0;
        for (int64_t k = std::max<int64_t>(0, s + W - L); k < W; ++k) {
          total += static_cast<C>(w[c * W + k]) * gp[s + W - 1 - k];
        }
        dx[row + s] = static_cast<T>(total);
      }
    }
  }
}

template <typename T>
void cpu_conv_step(const Tensor& x_in, const Tensor& state_in, const Tensor& w_in,
                   const Tensor& b_in, bool silu, const Tensor& y_out) {
  using C = compute_t<T>;
  const int64_t rows = x_in.size(0) * x_in.size(1), channels = x_in.size(1);
  const int64_t W = w_in.size(1), S = state_in.size(2);
  const T *x = x_in.data<T>(), *w = w_in.data<T>();
  const T* bias = b_in.defined() ? b_in.data<T>() : nullptr;
  T *state = state_in.data<T>(), *y = y_out.data<T>();
#pragma omp parallel for if (rows * S > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r % channels;
    T* s = state + r * S;
    // The window is the last W-1 stored inputs followed by x_t.
    C p = (bias ? static_cast<C>(bias[c]) : C(0)) +
          static_cast<C>(w[c * W + W - 1]) * static_cast<C>(x[r]);
    for (int64_t k = 0; k < W - 1; ++k) {
      p += static_cast<C>(w[c * W + k]) * static_cast<C>(s[S - (W - 1) + k]);
    }
    y[r] = static_cast<T>(activate(p, silu));
    if (S > 0) {
      std::copy(s + 1, s + S, s);
      s[S - 1] = x[r];
    }
  }
}

// ---- device dispatch ---------------------------------------------------------------------------

bool cuda_kernel_fits(const Tensor& x, const Tensor& weight) {
  if (!x.is_cuda() || weight.size(1) <= cuda::kMaxConvWidth) return x.is_cuda();
  static std::once_flag notice;
  std::call_once(notice, [&] {
    fmt::print(stderr,
               "causal_conv1d: width {} exceeds the CUDA kernels' {}; running the CPU reference "
               "kernel (with copies) instead\n",
               weight.size(1), cuda::kMaxConvWidth);
  });
  return false;
}

struct ConvGradients {
  Tensor dx, dweight, dbias;
};

ConvGradients conv_backward(const Tensor& x, const Tensor& w, const Tensor& b, bool silu,
                            const Tensor& grad_y) {
  const DType acc = scan_state_dtype(x.dtype());
  ConvGradients g{.dx = Tensor::empty(x.shape(), x.dtype(), x.device()),
                  .dweight = Tensor::zeros(w.shape(), acc, x.device()),
                  .dbias = b.defined() ? Tensor::zeros(b.shape(), acc, x.device()) : Tensor()};
  const Tensor gy = grad_y.contiguous();
  auto run = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb, const Tensor& gg,
                 const std::vector<Tensor>& out) {
    dispatch_floating(x.dtype(), "causal_conv1d backward", [&]<typename T>() {
      cpu_conv_backward<T>(xx, ww, bb, silu, gg, out[0], out[1], out[2]);
    });
  };
  if (cuda_kernel_fits(x, w)) {
    cuda::causal_conv1d_backward(x, w, b, silu, gy, g.dx, g.dweight, g.dbias);
  } else if (!x.is_cuda()) {
    run(x, w, b, gy, {g.dx, g.dweight, g.dbias});
  } else {
    on_host({g.dx, g.dweight, g.dbias}, [&](const std::vector<Tensor>& h) {
      run(to_cpu(x), to_cpu(w), to_cpu(b), to_cpu(gy), h);
    });
  }
  if (g.dbias.defined()) g.dbias = g.dbias.to(x.dtype());
  g.dweight = g.dweight.to(x.dtype());
  return g;
}

}  // namespace

Tensor causal_conv1d(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                     bool silu) {
  const char* op = "causal_conv1d";
  DSSM_CHECK(x_in.defined() && x_in.dim() == 3, op,
             "expected x of shape [batch, channels, length], got {}",
             x_in.defined() ? describe(x_in) : "none");
  const auto [weight, bias] = checked_filter(x_in, weight_in, bias_in, op);
  const Tensor x = x_in.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  auto run = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb, const Tensor& yy) {
    dispatch_floating(x.dtype(), op,
                      [&]<typename T>() { cpu_conv_forward<T>(xx, ww, bb, silu, yy); });
  };
  if (cuda_kernel_fits(x, weight)) {
    cuda::causal_conv1d_forward(x, weight, bias, silu, y);
  } else if (!x.is_cuda()) {
    run(x, weight, bias, y);
  } else {
    on_host({y}, [&](const std::vector<Tensor>& h) {
      run(to_cpu(x), to_cpu(weight), to_cpu(bias), h[0]);
    });
  }
  record(op, {x_in, weight_in, bias_in}, {y}, [x, weight, bias, silu](const BackwardArgs& args) {
    const ConvGradients g = conv_backward(x, weight, bias, silu, args.grad());
    return std::vector<Tensor>{g.dx, g.dweight, g.dbias};
  });
  return y;
}

Tensor causal_conv1d_step(const Tensor& x_t, const Tensor& conv_state, const Tensor& weight_in,
                          const Tensor& bias_in, bool silu) {
  const char* op = "causal_conv1d_step";
  DSSM_CHECK(x_t.defined() && x_t.dim() == 2, op, "expected x_t of shape [batch, channels], got {}",
             x_t.defined() ? describe(x_t) : "none");
  const auto [weight, bias] = checked_filter(x_t, weight_in, bias_in, op);
  DSSM_CHECK(!any_requires_grad({x_t, weight_in, bias_in}), op,
             "not differentiable: run it under NoGradGuard (or use causal_conv1d to train)");
  const int64_t W = weight.size(1);
  DSSM_CHECK(conv_state.defined() && conv_state.dim() == 3 && conv_state.size(0) == x_t.size(0) &&
                 conv_state.size(1) == x_t.size(1) &&
                 (conv_state.size(2) == W - 1 || conv_state.size(2) == W) &&
                 conv_state.dtype() == x_t.dtype() && conv_state.device() == x_t.device() &&
                 conv_state.is_contiguous(),
             op, "expected a contiguous conv_state {}[{}, {}, {} or {}] on {}, got {}",
             dtype_name(x_t.dtype()), x_t.size(0), x_t.size(1), W - 1, W, x_t.device().str(),
             conv_state.defined() ? describe(conv_state) : "none");
  const Tensor x = x_t.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  auto run = [&](const Tensor& xx, const Tensor& ss, const Tensor& ww, const Tensor& bb,
                 const Tensor& yy) {
    dispatch_floating(x.dtype(), op,
                      [&]<typename T>() { cpu_conv_step<T>(xx, ss, ww, bb, silu, yy); });
  };
  if (cuda_kernel_fits(x, weight)) {
    cuda::causal_conv1d_step(x, conv_state, weight, bias, silu, y);
  } else if (!x.is_cuda()) {
    run(x, conv_state, weight, bias, y);
  } else {
    on_host({conv_state, y}, [&](const std::vector<Tensor>& h) {
      run(to_cpu(x), h[0], to_cpu(weight), to_cpu(bias), h[1]);
    });
  }
  return y;
}

namespace {

// Gradchecks: batch 2, channels 3, length 7, width 4 (width > 1 exercises the zero padding).
const OpRegistration kConv{
    {.name = "causal_conv1d",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 7}), random_normal(g, {3, 4})};
         },
     .run = [](const std::vector<Tensor>& in) { return causal_conv1d(in[0], in[1]); }}};
const OpRegistration kConvBiasSilu{
    {.name = "causal_conv1d_bias_silu",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 7}), random_normal(g, {3, 4}),
                                      random_normal(g, {3})};
         },
     .run =
         [](const std::vector<Tensor>& in) { return causal_conv1d(in[0], in[1], in[2], true); }}};

}  // namespace
}  // namespace dssm
