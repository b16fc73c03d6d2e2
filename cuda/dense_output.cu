// CUDA kernels of DenseMamba's fused output (ops/dense_output.cpp has the math):
//   s = sum_i r_i,   q = own + g s + D_c x,   y = q silu(z),   dq = dy silu(z)
//   d own = dq,  d r = dq g,  dg = dq s,  dx = dq D_c,  dz = dy q silu'(z),  dD_c = sum_{b,t} dq x
// As in the convolution's kernels, a thread takes kSteps consecutive steps of one (batch,
// channel) row and a block of kThreads threads a tile of kTile steps, so that the channel (for
// D) is one per block; a thread issues all its loads (16-byte vectors where the rows allow)
// before it computes. The backward's block adds its threads' terms of dD_c and a second kernel
// adds the blocks' shares per channel in a fixed order (no atomics: the same sums every run).
#include "cuda/common.cuh"
#include "cuda/items.cuh"
#include "cuda/kernels_ssm.hpp"
#include "cuda/row_reduce.cuh"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

constexpr int kThreads = 64;
constexpr int kSteps = 8;
constexpr int kTile = kThreads * kSteps;
// Blocks per SM the register budget is set for (f32, bf16: 85 registers a thread, 24 warps per
// SM): small blocks and more resident warps kept more loads in flight than 256 threads at 113
// registers (H200, docs/benchmarks.md); f64, for the tests, gets more registers.
template <typename T>
constexpr int kBlocksPerSm = sizeof(T) == 8 ? 4 : 12;

template <typename T>  // T: the device element type
struct Operands {
  const T *own, *gate, *x, *D, *z;  // gate nullptr: 1
  const T* readouts[kMaxDenseReadouts];
  int num_readouts;
  int64_t channels, length;
  bool vec;  // 16-byte vector access: every row aligned, the length a multiple of kSteps
};

bool aligned(const Tensor& t) {
  return !t.defined() || reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
}

template <typename S>
Operands<device_t<S>> operands(const DenseOutputInputs& in, std::initializer_list<Tensor> rows) {
  Operands<device_t<S>> a{};
  a.own = device_data<S>(in.own);
  a.gate = in.gate.defined() ? device_data<S>(in.gate) : nullptr;
  a.x = device_data<S>(in.x);
  a.D = device_data<S>(in.D);
  a.z = device_data<S>(in.z);
  a.num_readouts = static_cast<int>(in.readouts.size());
  for (int i = 0; i < a.num_readouts; ++i) a.readouts[i] = device_data<S>(in.readouts[i]);
  a.channels = in.own.size(1);
  a.length = in.own.size(2);
  a.vec = a.length % kSteps == 0 && aligned(in.own) && aligned(in.gate) && aligned(in.x) &&
          aligned(in.z);
  for (const Tensor& r : in.readouts) a.vec = a.vec && aligned(r);
  for (const Tensor& t : rows) a.vec = a.vec && aligned(t);
  return a;
}

unsigned tile_blocks(const Tensor& own) {
  return row_tile_blocks<kTile>(own.size(0) * own.size(1), own.size(2), "dense_mamba_output");
}

// A thread's steps of every operand but dy, and q (the fused read-out plus the skip).
template <typename T, typename C = decltype(to_compute(T()))>
struct Loaded {
  C s[kSteps], g[kSteps], x[kSteps], z[kSteps], q[kSteps];
};
template <typename T, typename C = decltype(to_compute(T()))>
__device__ __forceinline__ void load_steps(const Operands<T>& a, const RowPiece& p, Loaded<T>& v) {
  const int64_t L = a.length, row = p.row * L;
  C own[kSteps], r[kMaxDenseReadouts][kSteps];
  load_items(a.own + row, p.t, L, a.vec, own);
  load_items(a.x + row, p.t, L, a.vec, v.x);
  load_items(a.z + row, p.t, L, a.vec, v.z);
  if (a.gate) load_items(a.gate + row, p.t, L, a.vec, v.g);
#pragma unroll
  for (int i = 0; i < kMaxDenseReadouts; ++i) {
    if (i < a.num_readouts) load_items(a.readouts[i] + row, p.t, L, a.vec, r[i]);
  }
  const C d = to_compute(a.D[p.c]);
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    C s = C(0);
#pragma unroll
    for (int i = 0; i < kMaxDenseReadouts; ++i) {
      if (i < a.num_readouts) s += r[i][k];
    }
    if (!a.gate) v.g[k] = C(1);
    v.s[k] = s;
    v.q[k] = own[k] + v.g[k] * s + d * v.x[k];
  }
}

template <typename T>
__global__ __launch_bounds__(kThreads,
                             kBlocksPerSm<T>) void dense_output_forward_kernel(Operands<T> a,
                                                                               T* y) {
  using C = decltype(to_compute(T()));
  const RowPiece p = row_piece<kTile, kSteps>(a.channels, a.length);
  if (p.t >= a.length) return;
  Loaded<T> v;
  load_steps(a, p, v);
  C out[kSteps];
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    out[k] = v.q[k] * math::unary_forward<UnaryOp::silu, C>(v.z[k], C(0));
  }
  store_items(y + p.row * a.length, p.t, a.length, true, a.vec, out);
}

template <typename T>
struct GradPointers {
  T *own, *readout, *gate, *x, *z;  // readout, gate: nullptr when not written
};

// The gradients of the thread's steps, and the block's share of dD_c in shares[blockIdx.x].
template <typename T, typename A>
__global__ __launch_bounds__(kThreads, kBlocksPerSm<T>) void dense_output_backward_kernel(
    Operands<T> a, const T* gy, GradPointers<T> d, A* shares) {
  using C = decltype(to_compute(T()));
  const RowPiece p = row_piece<kTile, kSteps>(a.channels, a.length);
  const int64_t L = a.length, row = p.row * L;
  const bool live = p.t < L;  // every thread takes part in the block's sum
  Loaded<T> v;
  C dy[kSteps];
  load_items(gy + row, live ? p.t : L, L, a.vec, dy);
  load_steps(a, {p.row, p.c, live ? p.t : L}, v);
  const C dc = to_compute(a.D[p.c]);
  C dq[kSteps], dr[kSteps], dg[kSteps], dx[kSteps], dz[kSteps];
  A share = A(0);
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    dq[k] = dy[k] * math::unary_forward<UnaryOp::silu, C>(v.z[k], C(0));
    dr[k] = dq[k] * v.g[k];
    dg[k] = dq[k] * v.s[k];
    dx[k] = dq[k] * dc;
    dz[k] = dy[k] * v.q[k] * math::unary_derivative<UnaryOp::silu, C>(v.z[k], C(0), C(0));
    share += static_cast<A>(dq[k]) * static_cast<A>(v.x[k]);
  }
  store_items(d.own + row, p.t, L, live, a.vec, dq);
  if (d.readout) store_items(d.readout + row, p.t, L, live, a.vec, dr);
  if (d.gate) store_items(d.gate + row, p.t, L, live, a.vec, dg);
  store_items(d.x + row, p.t, L, live, a.vec, dx);
  store_items(d.z + row, p.t, L, live, a.vec, dz);
  const A total = block_sum(share);
  if (threadIdx.x == 0) shares[blockIdx.x] = total;
}

// dD[c]: the blocks' shares of channel c added over batches and tiles, in order.
template <typename A>
__global__ void dense_output_dD_kernel(const A* shares, int64_t batch, int64_t channels,
                                       int64_t tiles, A* dD) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= channels) return;
  A total = A(0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < tiles; ++t) total += shares[(b * channels + c) * tiles + t];
  }
  dD[c] = total;
}

template <typename S>
device_t<S>* data_or_null(const Tensor& t) {
  return t.defined() ? device_data<S>(t) : nullptr;
}

}  // namespace

void dense_mamba_output_forward(const DenseOutputInputs& in, const Tensor& y) {
  if (y.numel() == 0) return;
  dispatch_floating(y.dtype(), "dense_mamba_output", [&]<typename S>() {
    dense_output_forward_kernel<<<tile_blocks(in.own), kThreads, 0, current_stream()>>>(
        operands<S>(in, {y}), device_data<S>(y));
    DSSM_CUDA_CHECK_LAUNCH("dense_output_forward_kernel");
  });
}

void dense_mamba_output_backward(const DenseOutputInputs& in, const Tensor& grad_y,
                                 const DenseOutputGrads& g) {
  if (in.own.numel() == 0) return;  // dD stays zero
  dispatch_floating(in.own.dtype(), "dense_mamba_output backward", [&]<typename S>() {
    using A = compute_t<S>;
    const unsigned blocks = tile_blocks(in.own);
    const Tensor shares = Tensor::empty({int64_t{blocks}}, g.D.dtype(), in.own.device());
    const GradPointers<device_t<S>> d{device_data<S>(g.own), data_or_null<S>(g.readout),
                                      data_or_null<S>(g.gate), device_data<S>(g.x),
                                      device_data<S>(g.z)};
    dense_output_backward_kernel<<<blocks, kThreads, 0, current_stream()>>>(
        operands<S>(in, {grad_y, g.own, g.readout, g.gate, g.x, g.z}), device_data<S>(grad_y), d,
        shares.data<A>());
    DSSM_CUDA_CHECK_LAUNCH("dense_output_backward_kernel");
    const int64_t batch = in.own.size(0), channels = in.own.size(1);
    dense_output_dD_kernel<<<static_cast<unsigned>((channels + kThreads - 1) / kThreads), kThreads,
                             0, current_stream()>>>(shares.data<A>(), batch, channels,
                                                    blocks / (batch * channels), g.D.data<A>());
    DSSM_CUDA_CHECK_LAUNCH("dense_output_dD_kernel");
  });
}

}  // namespace dssm::cuda
