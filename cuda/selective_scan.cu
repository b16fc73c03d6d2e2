// CUDA kernels of the selective scan (ops/selective_scan.cpp has the math and the CPU kernels):
//   h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t,   y_t = C_t . h_t + D u_t,   out_t = y_t silu(z_t).
// Layout: one half warp (16 lanes) per (batch, channel) pair, lane n holding state n in a
// register (N <= 16; lanes n >= N hold zeros). Each pair walks the sequence; the sum over n of
// C_t h_t is a half-warp shuffle reduction. Parallelism is batch x channels x 16 threads
// (65536 at batch 2, 2048 channels), enough to keep an H100 busy; the sequence itself is walked
// serially (no block-level scan over time yet).
// Backward (the reverse recurrence G_t = C_t gy_t + a_{t+1} G_{t+1}) recomputes states chunk by
// chunk: pass 1 stores the state entering every kChunk-step chunk in a scratch buffer (length /
// kChunk states per lane); pass 2 visits chunks last to first, re-runs each from its entry state
// into a per-thread buffer of kChunk states and walks it backwards. dB and dC sum over channels
// with atomics (pre-summed over the two pairs of a warp); dA, dD, ddelta_bias sum over batch.
#include "cuda/common.cuh"
#include "cuda/kernels_ssm.hpp"
#include "ops/elementwise_math.hpp"

namespace dssm::cuda {
namespace {

constexpr int kLanes = 16;         // states per pair (one lane each)
constexpr int kPairsPerBlock = 8;  // 128 threads
constexpr int64_t kChunk = 32;     // backward's recomputation chunk

template <typename T>  // T: the device element type (__nv_bfloat16, float, double)
struct ScanArgs {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias;
  int64_t batch, channels, length, N;
  bool softplus;
};

template <typename S>
ScanArgs<device_t<S>> scan_args(const ScanInputs& in) {
  auto ptr = [](const Tensor& t) { return t.defined() ? device_data<S>(t) : nullptr; };
  return {ptr(in.u),
          ptr(in.delta),
          ptr(in.A),
          ptr(in.B),
          ptr(in.C),
          ptr(in.D),
          ptr(in.z),
          ptr(in.delta_bias),
          in.u.size(0),
          in.u.size(1),
          in.u.dim() == 3 ? in.u.size(2) : 1,
          in.A.size(1),
          in.delta_softplus};
}

// The pair (batch, channel) and state lane of this thread.
struct Lane {
  int64_t pair, b, c;
  int n;
  bool has_state;  // n < N
  unsigned mask;   // the 16 lanes of this pair
  bool valid;      // pair < batch * channels
};

template <typename T>
__device__ Lane lane_of(const ScanArgs<T>& a) {
  Lane l;
  l.pair = static_cast<int64_t>(blockIdx.x) * kPairsPerBlock + threadIdx.x / kLanes;
  l.n = static_cast<int>(threadIdx.x % kLanes);
  l.b = l.pair / a.channels;
  l.c = l.pair % a.channels;
  l.has_state = l.n < a.N;
  l.mask = 0xffffu << (threadIdx.x & 16u);
  l.valid = l.pair < a.batch * a.channels;
  return l;
}

template <typename C>
__device__ C pair_sum(C v, unsigned mask) {
  for (int offset = kLanes / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(mask, v, offset, kLanes);
  return v;
}

// Everything one time step of one lane reads.
template <typename C>
struct StepValues {
  C u, pre, dt, a, b, c;  // a = exp(dt A), b = B_t[n], c = C_t[n]
};

template <typename T, typename C = decltype(to_compute(T()))>
__device__ StepValues<C> load_step(const ScanArgs<T>& a, const Lane& l, C A_n, int64_t t) {
  const int64_t i = l.pair * a.length + t, bnt = (l.b * a.N + l.n) * a.length + t;
  StepValues<C> v;
  v.u = to_compute(a.u[i]);
  v.pre = to_compute(a.delta[i]) + (a.bias ? to_compute(a.bias[l.c]) : C(0));
  v.dt = a.softplus ? math::softplus(v.pre) : v.pre;
  v.a = math::exp(v.dt * A_n);
  v.b = l.has_state ? to_compute(a.B[bnt]) : C(0);
  v.c = l.has_state ? to_compute(a.C[bnt]) : C(0);
  return v;
}

template <typename T, typename C>
__device__ C state_a(const ScanArgs<T>& a, const Lane& l) {
  return l.has_state ? to_compute(a.A[l.c * a.N + l.n]) : C(0);
}

template <typename T, typename C>
__global__ void scan_forward_kernel(ScanArgs<T> a, T* y, C* last_state) {
  const Lane l = lane_of(a);
  if (!l.valid) return;
  const C A_n = state_a<T, C>(a, l), D = a.D ? to_compute(a.D[l.c]) : C(0);
  C h = 0;
  for (int64_t t = 0; t < a.length; ++t) {
    const StepValues<C> v = load_step(a, l, A_n, t);
    h = v.a * h + v.dt * v.b * v.u;
    C out = pair_sum(v.c * h, l.mask) + D * v.u;
    if (l.n == 0) {
      const int64_t i = l.pair * a.length + t;
      if (a.z) out *= math::unary_forward<UnaryOp::silu, C>(to_compute(a.z[i]), C(0));
      y[i] = from_compute<T>(out);
    }
  }
  if (last_state && l.has_state) last_state[l.pair * a.N + l.n] = h;
}

template <typename T, typename C>
struct BackwardOut {
  T *du, *ddelta, *dz;
  C *dA, *dB, *dC, *dD, *dbias;
  C* entry;  // scratch: [pairs, chunks, kLanes] states entering each chunk
};

template <typename T, typename C>
__global__ void scan_backward_kernel(ScanArgs<T> a, const T* grad_y, const C* grad_last,
                                     BackwardOut<T, C> o, bool pairs_share_batch) {
  const Lane l = lane_of(a);
  if (!l.valid) return;
  const int64_t L = a.length, chunks = (L + kChunk - 1) / kChunk;
  const C A_n = state_a<T, C>(a, l), D = a.D ? to_compute(a.D[l.c]) : C(0);
  C* entry = o.entry + l.pair * chunks * kLanes + l.n;
  // Pass 1: the state entering each chunk.
  C h = 0;
  for (int64_t t = 0; t < L; ++t) {
    if (t % kChunk == 0) entry[(t / kChunk) * kLanes] = h;
    const StepValues<C> v = load_step(a, l, A_n, t);
    h = v.a * h + v.dt * v.b * v.u;
  }
  // Pass 2: chunks last to first. states[i] = h_{t0 + i} within the chunk.
  C G = grad_last && l.has_state ? grad_last[l.pair * a.N + l.n] : C(0);
  C dA = 0, dD = 0, dbias = 0;
  C states[kChunk];
  for (int64_t k = chunks - 1; k >= 0; --k) {
    const int64_t t0 = k * kChunk, t1 = t0 + kChunk < L ? t0 + kChunk : L;
    const C h_entry = entry[k * kLanes];
    h = h_entry;
    for (int64_t t = t0; t < t1; ++t) {
      const StepValues<C> v = load_step(a, l, A_n, t);
      h = v.a * h + v.dt * v.b * v.u;
      states[t - t0] = h;
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t i = l.pair * a.length + t, bnt = (l.b * a.N + l.n) * a.length + t;
      const StepValues<C> v = load_step(a, l, A_n, t);
      const C h_t = states[t - t0], h_prev = t > t0 ? states[t - t0 - 1] : h_entry;
      C gy = to_compute(grad_y[i]);
      if (a.z) {
        const C z = to_compute(a.z[i]);
        const C y = pair_sum(v.c * h_t, l.mask) + D * v.u;
        if (l.n == 0) {
          o.dz[i] =
              from_compute<T>(gy * y * math::unary_derivative<UnaryOp::silu, C>(z, C(0), C(0)));
        }
        gy *= math::unary_forward<UnaryOp::silu, C>(z, C(0));
      }
      G += v.c * gy;
      C dC_t = gy * h_t, dB_t = G * v.dt * v.u;
      if (pairs_share_batch) {  // the other half warp is the next channel of the same batch
        dC_t += __shfl_xor_sync(0xffffffffu, dC_t, kLanes);
        dB_t += __shfl_xor_sync(0xffffffffu, dB_t, kLanes);
      }
      if (l.has_state && (!pairs_share_batch || threadIdx.x % 32 < kLanes)) {
        atomicAdd(o.dC + bnt, dC_t);
        atomicAdd(o.dB + bnt, dB_t);
      }
      dA += G * h_prev * v.a * v.dt;
      const C ddt = pair_sum(G * (h_prev * v.a * A_n + v.b * v.u), l.mask);
      const C du = pair_sum(G * v.dt * v.b, l.mask) + D * gy;
      if (l.n == 0) {
        const C dpre = ddt * (a.softplus ? math::sigmoid(v.pre) : C(1));
        o.du[i] = from_compute<T>(du);
        o.ddelta[i] = from_compute<T>(dpre);
        dbias += dpre;
        dD += gy * v.u;
      }
      G *= v.a;
    }
  }
  if (l.has_state) atomicAdd(o.dA + l.c * a.N + l.n, dA);
  if (l.n == 0 && o.dD) atomicAdd(o.dD + l.c, dD);
  if (l.n == 0 && o.dbias) atomicAdd(o.dbias + l.c, dbias);
}

template <typename T, typename C>
__global__ void scan_step_kernel(ScanArgs<T> a, C* state, T* y) {
  const Lane l = lane_of(a);
  if (!l.valid) return;
  const C A_n = state_a<T, C>(a, l), D = a.D ? to_compute(a.D[l.c]) : C(0);
  const StepValues<C> v = load_step(a, l, A_n, 0);
  C* h = state + l.pair * a.N + l.n;
  const C h_new = l.has_state ? v.a * *h + v.dt * v.b * v.u : C(0);
  if (l.has_state) *h = h_new;
  C out = pair_sum(v.c * h_new, l.mask) + D * v.u;
  if (l.n == 0) {
    if (a.z) out *= math::unary_forward<UnaryOp::silu, C>(to_compute(a.z[l.pair]), C(0));
    y[l.pair] = from_compute<T>(out);
  }
}

unsigned scan_blocks(const ScanInputs& in) {
  const int64_t pairs = in.u.size(0) * in.u.size(1);
  return static_cast<unsigned>((pairs + kPairsPerBlock - 1) / kPairsPerBlock);
}

template <typename S>
using state_t = compute_t<S>;  // f32 for bf16 and f32, f64 for f64

template <typename S>
state_t<S>* state_data(const Tensor& t) {
  return t.defined() ? t.data<state_t<S>>() : nullptr;
}

}  // namespace

void selective_scan_forward(const ScanInputs& in, const Tensor& y, const Tensor& last_state) {
  const unsigned blocks = scan_blocks(in);
  if (blocks == 0) return;
  dispatch_floating(in.u.dtype(), "selective_scan", [&]<typename S>() {
    scan_forward_kernel<<<blocks, kLanes * kPairsPerBlock, 0, current_stream()>>>(
        scan_args<S>(in), device_data<S>(y), state_data<S>(last_state));
    DSSM_CUDA_CHECK_LAUNCH("scan_forward_kernel");
  });
}

void selective_scan_backward(const ScanInputs& in, const Tensor& grad_y,
                             const Tensor& grad_last_state, const ScanGradients& g) {
  const unsigned blocks = scan_blocks(in);
  if (blocks == 0) return;
  const int64_t pairs = in.u.size(0) * in.u.size(1);
  const int64_t chunks = (in.u.size(2) + kChunk - 1) / kChunk;
  const Tensor entry =
      Tensor::empty({pairs, chunks, kLanes}, scan_state_dtype(in.u.dtype()), in.u.device());
  dispatch_floating(in.u.dtype(), "selective_scan backward", [&]<typename S>() {
    const BackwardOut<device_t<S>, state_t<S>> out{device_data<S>(g.du),
                                                   device_data<S>(g.ddelta),
                                                   g.dz.defined() ? device_data<S>(g.dz) : nullptr,
                                                   state_data<S>(g.dA),
                                                   state_data<S>(g.dB),
                                                   state_data<S>(g.dC),
                                                   state_data<S>(g.dD),
                                                   state_data<S>(g.ddelta_bias),
                                                   state_data<S>(entry)};
    scan_backward_kernel<<<blocks, kLanes * kPairsPerBlock, 0, current_stream()>>>(
        scan_args<S>(in), device_data<S>(grad_y), state_data<S>(grad_last_state), out,
        in.u.size(1) % 2 == 0);
    DSSM_CUDA_CHECK_LAUNCH("scan_backward_kernel");
  });
}

void selective_scan_step(const ScanInputs& in_t, const Tensor& state, const Tensor& y) {
  const unsigned blocks = scan_blocks(in_t);
  if (blocks == 0) return;
  dispatch_floating(in_t.u.dtype(), "selective_scan_step", [&]<typename S>() {
    scan_step_kernel<<<blocks, kLanes * kPairsPerBlock, 0, current_stream()>>>(
        scan_args<S>(in_t), state_data<S>(state), device_data<S>(y));
    DSSM_CUDA_CHECK_LAUNCH("scan_step_kernel");
  });
}

}  // namespace dssm::cuda
