// CUDA kernels of the depthwise causal convolution (ops/causal_conv1d.cpp has the math):
//   p_t = bias + sum_k w_k x_{t-W+1+k},   y_t = act(p_t),   g'_t = dy_t act'(p_t)
//   dx_s = sum_k w_k g'_{s+W-1-k},   dw_k = sum_{b,t} g'_t x_{t-W+1+k},   dbias = sum_{b,t} g'_t
// A thread computes kSteps consecutive steps of one (batch, channel) row, a block of kThreads
// threads a tile of kTile steps. It reads its kSteps inputs and the kSteps before them (the
// window of its first outputs, W-1 <= kSteps) from global memory as 16-byte vectors where the
// rows allow, issuing all of its loads before it computes, so that every warp has several in
// flight (one load at a time per warp left these kernels at a fifth of the memory bandwidth);
// the piece before is its neighbour's, which the L1 cache serves. The weights sit right-aligned
// in kTaps registers (wr[kTaps - W + k] = w_k, zeros before), so that every index into the
// window is a constant. Backward recomputes g' for its steps and the W-1 after them (the next
// thread's first ones), then dx and its share of dw and dbias; the block adds the shares and a
// second kernel adds the tiles' shares per channel in a fixed order (no atomics: the sums do not
// depend on timing).
#include "cuda/common.cuh"
#include "cuda/items.cuh"
#include "cuda/kernels_ssm.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

constexpr int kMaxWidth = static_cast<int>(kMaxConvWidth);
constexpr int kThreads = 256;
constexpr int kSteps = 8;                 // consecutive steps of a thread
constexpr int kTile = kThreads * kSteps;  // steps of a row per block
static_assert(kMaxWidth - 1 <= kSteps, "a thread's window lies in the piece before its steps");

template <typename T>  // T: the device element type
struct ConvArgs {
  const T *x, *w, *bias;
  int64_t batch, channels, length;
  int width;
  bool silu;
  bool vec;  // 16-byte vector access: every row aligned, the length a multiple of kSteps
};

template <typename S>
ConvArgs<device_t<S>> conv_args(const Tensor& x, const Tensor& w, const Tensor& bias, bool silu,
                                std::initializer_list<Tensor> rows = {}) {
  const int64_t length = x.dim() == 3 ? x.size(2) : 1;
  bool vec = length % kSteps == 0;
  for (const Tensor& t : rows) vec = vec && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
  return {device_data<S>(x),
          device_data<S>(w),
          bias.defined() ? device_data<S>(bias) : nullptr,
          x.size(0),
          x.size(1),
          length,
          static_cast<int>(w.size(1)),
          silu,
          vec};
}

template <typename C>
__device__ C activate(C p, bool silu) {
  return silu ? math::unary_forward<UnaryOp::silu, C>(p, C(0)) : p;
}
template <typename C>
__device__ C activation_grad(C p, bool silu) {
  return silu ? math::unary_derivative<UnaryOp::silu, C>(p, C(0), C(0)) : C(1);
}

inline unsigned tile_blocks(const Tensor& x) {
  return row_tile_blocks<kTile>(x.size(0) * x.size(1), x.dim() == 3 ? x.size(2) : 1,
                                "causal_conv1d");
}

// Channel c's weights right-aligned in kTaps slots (zeros before), and its bias.
template <int kTaps, typename T, typename C>
__device__ void load_weights(const ConvArgs<T>& a, int64_t c, C (&wr)[kTaps], C& bias) {
#pragma unroll
  for (int m = 0; m < kTaps; ++m) {
    const int k = m - (kTaps - a.width);
    wr[m] = k >= 0 ? to_compute(a.w[c * a.width + k]) : C(0);
  }
  bias = a.bias ? to_compute(a.bias[c]) : C(0);
}

// p of step i of a window whose element kSteps + i is x at that step: bias + sum_m wr[m]
// x_{i-kTaps+1+m}.
template <int kTaps, int kWindow, typename C>
__device__ __forceinline__ C pre_activation(const C (&wr)[kTaps], C bias, const C (&x)[kWindow],
                                            int i) {
  C p = bias;
#pragma unroll
  for (int m = 0; m < kTaps; ++m) p += wr[m] * x[kSteps + i - kTaps + 1 + m];
  return p;
}

template <int kTaps, typename T>
__global__ __launch_bounds__(kThreads) void conv_forward_kernel(ConvArgs<T> a, T* y) {
  using C = decltype(to_compute(T()));
  const RowPiece piece = row_piece<kTile, kSteps>(a.channels, a.length);
  const int64_t L = a.length;
  if (piece.t >= L) return;
  const T* x_row = a.x + piece.row * L;
  C x[2 * kSteps], before[kSteps], own[kSteps];  // x[kSteps + i]: x at step piece.t + i
  load_items(x_row, piece.t - kSteps, L, a.vec, before);
  load_items(x_row, piece.t, L, a.vec, own);
  C wr[kTaps], bias;
  load_weights(a, piece.c, wr, bias);
#pragma unroll
  for (int i = 0; i < kSteps; ++i) x[i] = before[i], x[kSteps + i] = own[i];
  C out[kSteps];
#pragma unroll
  for (int i = 0; i < kSteps; ++i) out[i] = activate(pre_activation(wr, bias, x, i), a.silu);
  store_items(y + piece.row * L, piece.t, L, true, a.vec, out);
}

// dx of the thread's steps, and the block's share of dw[c, k] (k < W) and dbias[c] in
// shares[blockIdx.x][k] (slot W: dbias), in the accumulation type A.
template <int kTaps, typename T, typename A>
__global__ __launch_bounds__(kThreads) void conv_backward_kernel(ConvArgs<T> a, const T* gy, T* dx,
                                                                 A* shares) {
  using C = decltype(to_compute(T()));
  const RowPiece piece = row_piece<kTile, kSteps>(a.channels, a.length);
  const int64_t L = a.length;
  const bool live = piece.t < L;  // every thread takes part in the block's sums
  const T* x_row = a.x + piece.row * L;
  const T* gy_row = gy + piece.row * L;
  // x from kSteps before the thread's steps to kSteps after; dy of its steps and the next kSteps.
  C before[kSteps], own[kSteps], after[kSteps], gy_own[kSteps], gy_after[kSteps];
  load_items(x_row, live ? piece.t - kSteps : L, L, a.vec, before);
  load_items(x_row, live ? piece.t : L, L, a.vec, own);
  load_items(x_row, live ? piece.t + kSteps : L, L, a.vec, after);
  load_items(gy_row, live ? piece.t : L, L, a.vec, gy_own);
  load_items(gy_row, live ? piece.t + kSteps : L, L, a.vec, gy_after);
  C wr[kTaps], bias;
  load_weights(a, piece.c, wr, bias);
  C x[3 * kSteps];
#pragma unroll
  for (int i = 0; i < kSteps; ++i) {
    x[i] = before[i], x[kSteps + i] = own[i], x[2 * kSteps + i] = after[i];
  }
  // g' of steps i < kSteps + kTaps - 1 (0 past the row: dy is 0 there).
  C g[kSteps + kTaps - 1];
#pragma unroll
  for (int i = 0; i < kSteps + kTaps - 1; ++i) {
    const C dy = i < kSteps ? gy_own[i] : gy_after[i - kSteps];
    g[i] = dy * activation_grad(pre_activation(wr, bias, x, i), a.silu);
  }
  C out[kSteps];
  A share[kTaps + 1] = {};
#pragma unroll
  for (int i = 0; i < kSteps; ++i) {
    C total = C(0);
#pragma unroll
    for (int m = 0; m < kTaps; ++m) {
      total += wr[m] * g[i + kTaps - 1 - m];
      share[m] += static_cast<A>(g[i]) * static_cast<A>(x[kSteps + i - kTaps + 1 + m]);
    }
    share[kTaps] += static_cast<A>(g[i]);
    out[i] = total;
  }
  store_items(dx + piece.row * L, piece.t, L, live, a.vec, out);
  // The block's sums: slot kTaps - W + k holds dw_k, slot kTaps dbias.
#pragma unroll
  for (int m = 0; m <= kTaps; ++m) {
    const int k = m < kTaps ? m - (kTaps - a.width) : kMaxWidth;
    if (k < 0) continue;  // the same in every thread
    const A total = block_sum(share[m]);
    if (threadIdx.x == 0) shares[static_cast<int64_t>(blockIdx.x) * (kMaxWidth + 1) + k] = total;
  }
}

// dw[c, k] and dbias[c]: the tiles' shares of channel c added over batches and tiles, in order.
template <typename A>
__global__ void conv_dweight_kernel(const A* shares, int64_t batch, int64_t channels, int64_t tiles,
                                    int width, A* dw, A* dbias) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= channels * (kMaxWidth + 1)) return;
  const int64_t c = i / (kMaxWidth + 1);
  const int k = static_cast<int>(i % (kMaxWidth + 1));
  if (k >= width && k < kMaxWidth) return;
  A total = A(0);
  for (int64_t b = 0; b < batch; ++b) {
    const A* s = shares + ((b * channels + c) * tiles) * (kMaxWidth + 1) + k;
    for (int64_t t = 0; t < tiles; ++t) total += s[t * (kMaxWidth + 1)];
  }
  if (k < width) {
    dw[c * width + k] = total;
  } else if (dbias) {
    dbias[c] = total;
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

// kTaps: the width's register slots, 4 for Mamba's widths up to 4, else kMaxWidth.
template <typename F>
void with_taps(int64_t width, F&& f) {
  if (width <= 4) {
    f.template operator()<4>();
  } else {
    f.template operator()<kMaxWidth>();
  }
}

void causal_conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                           const Tensor& y) {
  if (y.numel() == 0) return;
  dispatch_floating(x.dtype(), "causal_conv1d", [&]<typename S>() {
    with_taps(weight.size(1), [&]<int kTaps>() {
      conv_forward_kernel<kTaps><<<tile_blocks(x), kThreads, 0, current_stream()>>>(
          conv_args<S>(x, weight, bias, silu, {x, y}), device_data<S>(y));
    });
    DSSM_CUDA_CHECK_LAUNCH("conv_forward_kernel");
  });
}

void causal_conv1d_backward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                            const Tensor& grad_y, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dbias) {
  if (x.numel() == 0) return;  // dweight, dbias stay zero
  dispatch_floating(x.dtype(), "causal_conv1d backward", [&]<typename S>() {
    using A = compute_t<S>;
    const ConvArgs<device_t<S>> args = conv_args<S>(x, weight, bias, silu, {x, grad_y, dx});
    const unsigned blocks = tile_blocks(x);
    const Tensor shares =
        Tensor::empty({int64_t{blocks}, kMaxWidth + 1}, dweight.dtype(), x.device());
    with_taps(weight.size(1), [&]<int kTaps>() {
      conv_backward_kernel<kTaps><<<blocks, kThreads, 0, current_stream()>>>(
          args, device_data<S>(grad_y), device_data<S>(dx), shares.data<A>());
    });
    DSSM_CUDA_CHECK_LAUNCH("conv_backward_kernel");
    const int64_t sums = args.channels * (kMaxWidth + 1);
    conv_dweight_kernel<<<static_cast<unsigned>((sums + kThreads - 1) / kThreads), kThreads, 0,
                          current_stream()>>>(
        shares.data<A>(), args.batch, args.channels, blocks / (args.batch * args.channels),
        args.width, dweight.data<A>(), dbias.defined() ? dbias.data<A>() : nullptr);
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
