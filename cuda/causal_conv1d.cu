// CUDA kernels of the depthwise causal convolution (ops/causal_conv1d.cpp has the math):
//   p_t = bias + sum_k w_k x_{t-W+1+k},   y_t = act(p_t),   g'_t = dy_t act'(p_t)
//   dx_s = sum_k w_k g'_{s+W-1-k},   dw_k = sum_{b,t} g'_t x_{t-W+1+k},   dbias = sum_{b,t} g'_t
// A block takes a tile of kTile steps of one (batch, channel) row: it copies the inputs the tile
// needs (with W-1 steps of halo on each side, zeros outside the row) into shared memory with
// coalesced loads, and each thread computes every kThreads-th step of the tile from there, so that
// x and dy are read from memory once. Backward computes g'_t once per step (not W times per
// output) into shared memory, then dx and the tile's share of dw and dbias; a second kernel adds
// the tiles' shares per channel in a fixed order (no atomics: the sums do not depend on timing).
#include "cuda/common.cuh"
#include "cuda/kernels_ssm.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

constexpr int kMaxWidth = static_cast<int>(kMaxConvWidth);
constexpr int kThreads = 256;
constexpr int kTile = 2048;  // steps of a row per block
constexpr int kHalo = kMaxWidth - 1;

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

template <typename C>
__device__ C activate(C p, bool silu) {
  return silu ? math::unary_forward<UnaryOp::silu, C>(p, C(0)) : p;
}
template <typename C>
__device__ C activation_grad(C p, bool silu) {
  return silu ? math::unary_derivative<UnaryOp::silu, C>(p, C(0), C(0)) : C(1);
}

// The tile of the block: row (batch, channel) and its first step t0.
struct Tile {
  int64_t row, c, t0;
};
__device__ inline Tile block_tile(int64_t channels, int64_t length) {
  const int64_t tiles = (length + kTile - 1) / kTile;
  const int64_t row = blockIdx.x / tiles;
  return {row, row % channels, (blockIdx.x % tiles) * kTile};
}
inline unsigned tile_blocks(const Tensor& x) {
  const int64_t length = x.dim() == 3 ? x.size(2) : 1;
  const int64_t blocks = x.size(0) * x.size(1) * ((length + kTile - 1) / kTile);
  DSSM_CHECK(blocks < (int64_t{1} << 31), "causal_conv1d", "too many (batch, channel) rows: {}",
             x.size(0) * x.size(1));
  return static_cast<unsigned>(blocks);
}

// out[i] = row[first + i] for i < count, 0 where first + i is outside [0, length).
template <typename T, typename C>
__device__ void load_window(const T* row, int64_t first, int count, int64_t length, C* out) {
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const int64_t t = first + i;
    out[i] = t >= 0 && t < length ? to_compute(row[t]) : C(0);
  }
}

// Channel c's weights (0 past the width) and bias.
template <typename T, typename C>
__device__ void load_weights(const ConvArgs<T>& a, int64_t c, C (&w)[kMaxWidth], C& bias) {
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) w[k] = k < a.width ? to_compute(a.w[c * a.width + k]) : C(0);
  bias = a.bias ? to_compute(a.bias[c]) : C(0);
}

// p at window position i: bias + sum_k w_k window[i + k] (window[0] is x_{t0-W+1}).
template <typename C>
__device__ __forceinline__ C pre_activation(const C (&w)[kMaxWidth], C bias, int width,
                                            const C* window, int i) {
  C p = bias;
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) {
    if (k < width) p += w[k] * window[i + k];
  }
  return p;
}

template <typename T>
__global__ __launch_bounds__(kThreads) void conv_forward_kernel(ConvArgs<T> a, T* y) {
  using C = decltype(to_compute(T()));
  __shared__ C window[kTile + kHalo];  // x_{t0-W+1} ..
  const Tile tile = block_tile(a.channels, a.length);
  const int64_t L = a.length;
  const T* x_row = a.x + tile.row * L;
  load_window(x_row, tile.t0 - (a.width - 1), kTile + a.width - 1, L, window);
  C w[kMaxWidth], bias;
  load_weights(a, tile.c, w, bias);
  __syncthreads();
  for (int i = threadIdx.x; i < kTile && tile.t0 + i < L; i += kThreads) {
    y[tile.row * L + tile.t0 + i] =
        from_compute<T>(activate(pre_activation(w, bias, a.width, window, i), a.silu));
  }
}

// dx of the tile, and its share of dw[c, k] (k < W) and dbias[c] in shares[blockIdx.x][k]
// (slot W: dbias), in the accumulation type A.
template <typename T, typename A>
__global__ __launch_bounds__(kThreads) void conv_backward_kernel(ConvArgs<T> a, const T* gy, T* dx,
                                                                 A* shares) {
  using C = decltype(to_compute(T()));
  __shared__ C window[kTile + 2 * kHalo];  // x_{t0-W+1} .. x_{t0+kTile+W-2}
  __shared__ C g[kTile + kHalo];           // g'_{t0} .. g'_{t0+kTile+W-2}, 0 past the row
  const Tile tile = block_tile(a.channels, a.length);
  const int64_t L = a.length;
  const int W = a.width;
  load_window(a.x + tile.row * L, tile.t0 - (W - 1), kTile + 2 * (W - 1), L, window);
  load_window(gy + tile.row * L, tile.t0, kTile + W - 1, L, g);
  C w[kMaxWidth], bias;
  load_weights(a, tile.c, w, bias);
  __syncthreads();
  for (int i = threadIdx.x; i < kTile + W - 1; i += kThreads) {
    g[i] *= activation_grad(pre_activation(w, bias, W, window, i), a.silu);
  }
  __syncthreads();
  A share[kMaxWidth + 1] = {};
  for (int i = threadIdx.x; i < kTile && tile.t0 + i < L; i += kThreads) {
    C total = C(0);
#pragma unroll
    for (int k = 0; k < kMaxWidth; ++k) {
      if (k < W) {
        total += w[k] * g[i + W - 1 - k];
        share[k] += static_cast<A>(g[i]) * static_cast<A>(window[i + k]);
      }
    }
    share[kMaxWidth] += static_cast<A>(g[i]);
    dx[tile.row * L + tile.t0 + i] = from_compute<T>(total);
  }
  // The block's sums (the slots past the width are never read: left out, alike in every thread).
#pragma unroll
  for (int k = 0; k <= kMaxWidth; ++k) {
    if (k >= W && k < kMaxWidth) continue;
    const A total = block_sum(share[k]);
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

void causal_conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                           const Tensor& y) {
  if (y.numel() == 0) return;
  dispatch_floating(x.dtype(), "causal_conv1d", [&]<typename S>() {
    conv_forward_kernel<<<tile_blocks(x), kThreads, 0, current_stream()>>>(
        conv_args<S>(x, weight, bias, silu), device_data<S>(y));
    DSSM_CUDA_CHECK_LAUNCH("conv_forward_kernel");
  });
}

void causal_conv1d_backward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                            const Tensor& grad_y, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dbias) {
  if (x.numel() == 0) return;  // dweight, dbias stay zero
  dispatch_floating(x.dtype(), "causal_conv1d backward", [&]<typename S>() {
    using A = compute_t<S>;
    const ConvArgs<device_t<S>> args = conv_args<S>(x, weight, bias, silu);
    const unsigned blocks = tile_blocks(x);
    const Tensor shares =
        Tensor::empty({int64_t{blocks}, kMaxWidth + 1}, dweight.dtype(), x.device());
    conv_backward_kernel<<<blocks, kThreads, 0, current_stream()>>>(
        args, device_data<S>(grad_y), device_data<S>(dx), shares.data<A>());
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
