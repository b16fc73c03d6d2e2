// CUDA kernels of the depthwise causal convolution (ops/causal_conv1d.cpp has the math):
//   p_t = bias + sum_k w_k x_{t-W+1+k},   y_t = act(p_t),   g'_t = dy_t act'(p_t)
//   dx_s = sum_k w_k g'_{s+W-1-k},   dw_k = sum_{b,t} g'_t x_{t-W+1+k},   dbias = sum_{b,t} g'_t
// Forward and dx: one thread per element (W <= kMaxConvWidth multiply-adds, W^2 for dx, which
// recomputes the W pre-activations it needs). dw, dbias: one block per channel, each thread
// summing a strided share of that channel's (batch, time) positions, then a block reduction.
#include "cuda/common.cuh"
#include "cuda/kernels_ssm.hpp"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

constexpr int kMaxWidth = static_cast<int>(kMaxConvWidth);
constexpr int kReduceThreads = 256;

template <typename T>  // T: the device element type
struct ConvArgs {
  const T *x, *w, *bias;
  int64_t batch, channels, length;
  int width;
  bool silu;
};

template <typename S>
ConvArgs<device_t<S>> conv_args(const Tensor& x, const Tensor& w, const Tensor& bias, bool silu) {
  return {device_data<S>(x),
          device_data<S>(w),
          bias.defined() ? device_data<S>(bias) : nullptr,
          x.size(0),
          x.size(1),
          x.dim() == 3 ? x.size(2) : 1,
          static_cast<int>(w.size(1)),
          silu};
}

// The pre-activation at time t of the row starting at x_row (channel c).
template <typename T, typename C = decltype(to_compute(T()))>
__device__ C pre_activation(const ConvArgs<T>& a, const T* x_row, int64_t c, int64_t t) {
  C p = a.bias ? to_compute(a.bias[c]) : C(0);
  for (int k = 0; k < a.width; ++k) {
    const int64_t s = t - (a.width - 1) + k;
    if (s >= 0) p += to_compute(a.w[c * a.width + k]) * to_compute(x_row[s]);
  }
  return p;
}

template <typename C>
__device__ C activate(C p, bool silu) {
  return silu ? math::unary_forward<UnaryOp::silu, C>(p, C(0)) : p;
}
template <typename C>
__device__ C activation_grad(C p, bool silu) {
  return silu ? math::unary_derivative<UnaryOp::silu, C>(p, C(0), C(0)) : C(1);
}

template <typename T>
__global__ void conv_forward_kernel(ConvArgs<T> a, T* y) {
  const int64_t n = a.batch * a.channels * a.length;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / a.length, t = i % a.length, c = row % a.channels;
    y[i] = from_compute<T>(activate(pre_activation(a, a.x + row * a.length, c, t), a.silu));
  }
}

template <typename T>
__global__ void conv_dx_kernel(ConvArgs<T> a, const T* gy, T* dx) {
  using C = decltype(to_compute(T()));
  const int64_t n = a.batch * a.channels * a.length;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / a.length, s = i % a.length, c = row % a.channels;
    const T* x_row = a.x + row * a.length;
    C total = 0;
    for (int k = 0; k < a.width; ++k) {
      const int64_t t = s + a.width - 1 - k;
      if (t >= a.length) continue;
      const C p = pre_activation(a, x_row, c, t);
      total += to_compute(a.w[c * a.width + k]) * to_compute(gy[row * a.length + t]) *
               activation_grad(p, a.silu);
    }
    dx[i] = from_compute<T>(total);
  }
}

// One block per channel c: dw[c, k] and dbias[c] (in the accumulation type A).
template <typename T, typename A>
__global__ void conv_dweight_kernel(ConvArgs<T> a, const T* gy, A* dw, A* dbias) {
  const int64_t c = blockIdx.x;
  A acc[kMaxWidth + 1] = {};  // dw[c, 0..W-1], then dbias[c]
  for (int64_t j = threadIdx.x; j < a.batch * a.length; j += blockDim.x) {
    const int64_t b = j / a.length, t = j % a.length, row = b * a.channels + c;
    const T* x_row = a.x + row * a.length;
    const A g = to_compute(gy[row * a.length + t]) *
                activation_grad(static_cast<A>(pre_activation(a, x_row, c, t)), a.silu);
#pragma unroll
    for (int k = 0; k < kMaxWidth; ++k) {
      const int64_t s = t - (a.width - 1) + k;
      if (k < a.width && s >= 0) acc[k] += g * to_compute(x_row[s]);
    }
    acc[kMaxWidth] += g;
  }
  __shared__ A partial[kReduceThreads];
  for (int k = 0; k <= a.width; ++k) {
    const int slot = k == a.width ? kMaxWidth : k;
    partial[threadIdx.x] = acc[slot];
    __syncthreads();
    for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
      if (static_cast<int>(threadIdx.x) < stride)
        partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      if (k < a.width)
        dw[c * a.width + k] = partial[0];
      else if (dbias)
        dbias[c] = partial[0];
    }
    __syncthreads();
  }
}

// One thread per (batch, channel): the window is the last W-1 stored inputs, then x_t.
template <typename T>
__global__ void conv_step_kernel(ConvArgs<T> a, T* state, int64_t state_width, T* y) {
  using C = decltype(to_compute(T()));
  const int64_t rows = a.batch * a.channels;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = r % a.channels;
    T* s = state + r * state_width;
    C p = (a.bias ? to_compute(a.bias[c]) : C(0)) +
          to_compute(a.w[c * a.width + a.width - 1]) * to_compute(a.x[r]);
    for (int k = 0; k < a.width - 1; ++k) {
      p += to_compute(a.w[c * a.width + k]) * to_compute(s[state_width - (a.width - 1) + k]);
    }
    y[r] = from_compute<T>(activate(p, a.silu));
    for (int64_t k = 0; k + 1 < state_width; ++k) s[k] = s[k + 1];
    if (state_width > 0) s[state_width - 1] = a.x[r];
  }
}

}  // namespace

void causal_conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                           const Tensor& y) {
  if (y.numel() == 0) return;
  const LaunchConfig cfg = elementwise_launch(y.numel());
  dispatch_floating(x.dtype(), "causal_conv1d", [&]<typename S>() {
    conv_forward_kernel<<<cfg.blocks, cfg.threads, 0, current_stream()>>>(
        conv_args<S>(x, weight, bias, silu), device_data<S>(y));
    DSSM_CUDA_CHECK_LAUNCH("conv_forward_kernel");
  });
}

void causal_conv1d_backward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                            const Tensor& grad_y, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dbias) {
  if (x.numel() == 0) return;  // dweight, dbias stay zero
  const LaunchConfig cfg = elementwise_launch(x.numel());
  dispatch_floating(x.dtype(), "causal_conv1d backward", [&]<typename S>() {
    using A = compute_t<S>;
    const ConvArgs<device_t<S>> args = conv_args<S>(x, weight, bias, silu);
    conv_dx_kernel<<<cfg.blocks, cfg.threads, 0, current_stream()>>>(args, device_data<S>(grad_y),
                                                                     device_data<S>(dx));
    DSSM_CUDA_CHECK_LAUNCH("conv_dx_kernel");
    conv_dweight_kernel<<<static_cast<unsigned>(x.size(1)), kReduceThreads, 0, current_stream()>>>(
        args, device_data<S>(grad_y), dweight.data<A>(),
        dbias.defined() ? dbias.data<A>() : nullptr);
    DSSM_CUDA_CHECK_LAUNCH("conv_dweight_kernel");
  });
}

void causal_conv1d_step(const Tensor& x_t, const Tensor& state, const Tensor& weight,
                        const Tensor& bias, bool silu, const Tensor& y_t) {
  if (y_t.numel() == 0) return;
  const LaunchConfig cfg = elementwise_launch(y_t.numel());
  dispatch_floating(x_t.dtype(), "causal_conv1d_step", [&]<typename S>() {
    conv_step_kernel<<<cfg.blocks, cfg.threads, 0, current_stream()>>>(
        conv_args<S>(x_t, weight, bias, silu), device_data<S>(state), state.size(2),
        device_data<S>(y_t));
    DSSM_CUDA_CHECK_LAUNCH("conv_step_kernel");
  });
}

}  // namespace dssm::cuda
