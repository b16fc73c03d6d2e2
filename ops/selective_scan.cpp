// Selective scan (Mamba; DenseMamba Eq. 15-17): forward, backward, one-token step, CPU kernels.
// The recurrence, per (batch b, channel c, state n), with dt_t = softplus(delta_t + bias):
//   h_t = a_t h_{t-1} + b_t,   a_t = exp(dt_t A[c, n]),   b_t = dt_t B[b, n, t] u_t,
//   y_t = sum_n C[b, n, t] h_t + D[c] u_t,   out_t = y_t silu(z_t).
// Backward is the same recurrence run in reverse on G_t = dL/dh_t:
//   G_t = C_t gy_t + a_{t+1} G_{t+1}        (gy_t = dL/dy_t = dout_t silu(z_t))
// and then, at each t,  dC_t += gy_t h_t,  dA += G_t h_{t-1} a_t dt_t,  dB_t += G_t dt_t u_t,
//   ddt_t = sum_n G_t (h_{t-1} a_t A + B_t u_t),  du_t = sum_n G_t dt_t B_t + D gy_t,
//   dD += gy_t u_t,  dz_t = dout_t y_t silu'(z_t),  ddelta_t = ddt_t softplus'(delta_t + bias).
// Memory: forward saves only its inputs. Backward needs h_{t-1} and h_t in reverse order; it
// recomputes them per chunk of kChunk steps: a first forward pass keeps the state entering each
// chunk (length / kChunk states of N), then chunks are visited last to first, each re-run from
// its entry state into a kChunk x N buffer and walked backwards. The CUDA kernels do the same,
// except that when gradients will be needed their forward stores the chunk entry states (one
// N-vector per 32 steps and (b, c): 1/16 of u's size in f32 at N = 16) so that the backward
// skips its first pass.
#include "ops/selective_scan.hpp"

#include <fmt/format.h>

#include <mutex>

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "cuda/kernels_ssm.hpp"
#include "ops/elementwise.hpp"
#include "ops/elementwise_math.hpp"
#include "ops/host_fallback.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "ops/selective_scan_dispatch.hpp"

namespace dssm {
namespace {

constexpr int64_t kChunk = 64;

}  // namespace

namespace scan_dispatch {

// ---- shape contract ----------------------------------------------------------------------------

ScanInputs checked_operands(const ScanInputs& in, bool step, const char* op) {
  const int64_t rank = step ? 2 : 3;
  DSSM_CHECK(
      in.u.defined() && in.delta.defined() && in.A.defined() && in.B.defined() && in.C.defined(),
      op, "u, delta, A, B and C are required");
  DSSM_CHECK(in.u.dim() == rank, op, "expected u of {} dims ([batch, channels{}]), got {}", rank,
             step ? "" : ", length", describe(in.u));
  DSSM_CHECK(is_floating(in.u.dtype()), op, "expected floating inputs, got u {}", describe(in.u));
  const int64_t batch = in.u.size(0), channels = in.u.size(1);
  DSSM_CHECK(in.A.dim() == 2 && in.A.size(0) == channels, op, "expected A of shape [{}, N], got {}",
             channels, describe(in.A));
  const int64_t N = in.A.size(1);
  Shape per_channel = {batch, channels}, per_state = {batch, N};
  if (!step) per_channel.push_back(in.u.size(2)), per_state.push_back(in.u.size(2));
  auto expect = [&](const Tensor& t, const char* name, const Shape& shape) {
    if (!t.defined()) return Tensor();
    DSSM_CHECK(t.shape() == shape, op, "expected {} of shape {}, got {}", name, shape_str(shape),
               describe(t));
    DSSM_CHECK(t.dtype() == in.u.dtype() && t.device() == in.u.device(), op,
               "expected {} to match u ({}), got {}", name, describe(in.u), describe(t));
    return t.detach().contiguous();
  };
  return {.u = expect(in.u, "u", per_channel),
          .delta = expect(in.delta, "delta", per_channel),
          .A = expect(in.A, "A", {channels, N}),
          .B = expect(in.B, "B", per_state),
          .C = expect(in.C, "C", per_state),
          .D = expect(in.D, "D", {channels}),
          .z = expect(in.z, "z", per_channel),
          .delta_bias = expect(in.delta_bias, "delta_bias", {channels}),
          .delta_softplus = in.delta_softplus};
}

}  // namespace scan_dispatch

namespace {

// ---- CPU kernels -------------------------------------------------------------------------------

// Raw pointers and sizes of checked operands, read in the compute type C.
template <typename T>
struct ScanView {
  using C = compute_t<T>;
  const T *u, *delta, *A, *B, *C_, *D, *z, *bias;
  int64_t batch, channels, length, N;
  bool softplus;

  explicit ScanView(const ScanInputs& in)
      : u(in.u.data<T>()),
        delta(in.delta.data<T>()),
        A(in.A.data<T>()),
        B(in.B.data<T>()),
        C_(in.C.defined() ? in.C.data<T>() : nullptr),
        D(in.D.defined() ? in.D.data<T>() : nullptr),
        z(in.z.defined() ? in.z.data<T>() : nullptr),
        bias(in.delta_bias.defined() ? in.delta_bias.data<T>() : nullptr),
        batch(in.u.size(0)),
        channels(in.u.size(1)),
        length(in.u.dim() == 3 ? in.u.size(2) : 1),
        N(in.A.size(1)),
        softplus(in.delta_softplus) {}

  C pre_dt(int64_t c, int64_t i) const {  // delta + bias at flat index i of channel c
    return static_cast<C>(delta[i]) + (bias ? static_cast<C>(bias[c]) : C(0));
  }
  C dt(C pre) const { return softplus ? math::softplus(pre) : pre; }
  C dt_grad(C pre) const { return softplus ? math::sigmoid(pre) : C(1); }
  C d(int64_t c) const { return D ? static_cast<C>(D[c]) : C(0); }
  C a(int64_t c, int64_t n) const { return static_cast<C>(A[c * N + n]); }
  // B and C of batch b, state n, time t.
  C b_at(int64_t b, int64_t n, int64_t t) const { return B[(b * N + n) * length + t]; }
  C c_at(int64_t b, int64_t n, int64_t t) const { return C_[(b * N + n) * length + t]; }
};

// Advances h (N values) by one step at time t of row (b, c).
template <typename T, typename C = compute_t<T>>
void advance_states(const ScanView<T>& v, int64_t b, int64_t c, int64_t t, C dt, C u, C* h) {
  for (int64_t n = 0; n < v.N; ++n) {
    h[n] = math::exp(dt * v.a(c, n)) * h[n] + dt * v.b_at(b, n, t) * u;
  }
}

// Advances h by one step and returns the read-out sum_n C_t h_t.
template <typename T, typename C = compute_t<T>>
C advance(const ScanView<T>& v, int64_t b, int64_t c, int64_t t, C dt, C u, C* h) {
  advance_states(v, b, c, t, dt, u, h);
  C y = 0;
  for (int64_t n = 0; n < v.N; ++n) y += v.c_at(b, n, t) * h[n];
  return y;
}

// A deeper read-out of the scan's states (ScanReader): C [batch, N, length] and its gradient
// [batch, channels, length].
template <typename T>
struct ReaderView {
  const T *C, *grad;
};

template <typename T>
void cpu_scan_forward(const ScanInputs& in, const Tensor& y_out, const Tensor& last_state) {
  using C = compute_t<T>;
  const ScanView<T> v(in);
  T* y = y_out.data<T>();
  C* last = last_state.defined() ? last_state.data<C>() : nullptr;
#pragma omp parallel for collapse(2) if (v.batch * v.channels * v.length * v.N > 32768)
  for (int64_t b = 0; b < v.batch; ++b) {
    for (int64_t c = 0; c < v.channels; ++c) {
      std::vector<C> h(static_cast<size_t>(v.N), C(0));
      const int64_t row = (b * v.channels + c) * v.length;
      for (int64_t t = 0; t < v.length; ++t) {
        const C u = static_cast<C>(v.u[row + t]);
        C out = advance(v, b, c, t, v.dt(v.pre_dt(c, row + t)), u, h.data()) + v.d(c) * u;
        if (v.z) out *= math::unary_forward<UnaryOp::silu, C>(v.z[row + t], C(0));
        y[row + t] = static_cast<T>(out);
      }
      if (last) std::copy(h.begin(), h.end(), last + (b * v.channels + c) * v.N);
    }
  }
}

template <typename T>
void cpu_scan_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_last,
                       const ScanGradients& g, const std::vector<ScanReader>& readers) {
  using C = compute_t<T>;
  const ScanView<T> v(in);
  std::vector<ReaderView<T>> reads;
  for (const ScanReader& r : readers) reads.push_back({r.C.data<T>(), r.grad.data<T>()});
  const int64_t L = v.length, N = v.N, chunks = (L + kChunk - 1) / kChunk;
  const T* gy_in = grad_y.data<T>();
  const C* glast = grad_last.defined() ? grad_last.data<C>() : nullptr;
  T *du = g.du.data<T>(), *ddelta = g.ddelta.data<T>(), *dz = v.z ? g.dz.data<T>() : nullptr;
  C *dA = g.dA.data<C>(), *dD = v.D ? g.dD.data<C>() : nullptr;
  C* dbias = v.bias ? g.ddelta_bias.data<C>() : nullptr;
  C *dB = g.dB.data<C>(), *dC = g.dC.data<C>();
  std::mutex merge;
  // Each thread owns whole channels (so dA, dD, dbias have one writer) and keeps its own dB, dC
  // (summed over channels), merged at the end.
#pragma omp parallel if (v.batch * v.channels * L * N > 32768)
  {
    std::vector<C> dB_local(static_cast<size_t>(v.batch * N * L), C(0)), dC_local(dB_local);
    std::vector<C> entry(static_cast<size_t>(chunks * N)),
        states(static_cast<size_t>((kChunk + 1) * N));
    std::vector<C> G(static_cast<size_t>(N));
#pragma omp for
    for (int64_t c = 0; c < v.channels; ++c) {
      for (int64_t b = 0; b < v.batch; ++b) {
        const int64_t row = (b * v.channels + c) * L;
        // Pass 1: the state entering each chunk.
        std::fill(states.begin(), states.begin() + N, C(0));
        for (int64_t t = 0; t < L; ++t) {
          if (t % kChunk == 0) std::copy_n(states.begin(), N, entry.begin() + (t / kChunk) * N);
          advance(v, b, c, t, v.dt(v.pre_dt(c, row + t)), static_cast<C>(v.u[row + t]),
                  states.data());
        }
        for (int64_t n = 0; n < N; ++n) G[n] = glast ? glast[(b * v.channels + c) * N + n] : C(0);
        // Pass 2: chunks last to first; states[i * N + n] = h_{t0 + i - 1}[n].
        for (int64_t k = chunks - 1; k >= 0; --k) {
          const int64_t t0 = k * kChunk, t1 = std::min(L, t0 + kChunk);
          std::copy_n(entry.begin() + k * N, N, states.begin());
          for (int64_t t = t0; t < t1; ++t) {
            std::copy_n(states.begin() + (t - t0) * N, N, states.begin() + (t - t0 + 1) * N);
            advance(v, b, c, t, v.dt(v.pre_dt(c, row + t)), static_cast<C>(v.u[row + t]),
                    states.data() + (t - t0 + 1) * N);
          }
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const C* h_prev = states.data() + (t - t0) * N;
            const C* h = h_prev + N;
            const C u = static_cast<C>(v.u[row + t]);
            const C pre = v.pre_dt(c, row + t), dt = v.dt(pre);
            C gy = static_cast<C>(gy_in[row + t]);
            if (v.z) {
              const C z = static_cast<C>(v.z[row + t]);
              C y = v.d(c) * u;
              for (int64_t n = 0; n < N; ++n) y += v.c_at(b, n, t) * h[n];
              dz[row + t] =
                  static_cast<T>(gy * y * math::unary_derivative<UnaryOp::silu, C>(z, 0, 0));
              gy *= math::unary_forward<UnaryOp::silu, C>(z, C(0));
            }
            C du_t = v.d(c) * gy, ddt = 0;
            if (dD) dD[c] += gy * u;
            for (int64_t n = 0; n < N; ++n) {
              const int64_t bnt = (b * N + n) * L + t;
              const C a = math::exp(dt * v.a(c, n));
              G[n] += v.c_at(b, n, t) * gy;
              for (const ReaderView<T>& r : reads) {  // the deeper read-outs' C_t grad_t
                G[n] += static_cast<C>(r.C[bnt]) * static_cast<C>(r.grad[row + t]);
              }
              dC_local[bnt] += gy * h[n];
              dB_local[bnt] += G[n] * dt * u;
              dA[c * N + n] += G[n] * h_prev[n] * a * dt;
              ddt += G[n] * (h_prev[n] * a * v.a(c, n) + v.b_at(b, n, t) * u);
              du_t += G[n] * dt * v.b_at(b, n, t);
              G[n] *= a;
            }
            du[row + t] = static_cast<T>(du_t);
            const C dpre = ddt * v.dt_grad(pre);
            ddelta[row + t] = static_cast<T>(dpre);
            if (dbias) dbias[c] += dpre;
          }
        }
      }
    }
    const std::lock_guard<std::mutex> lock(merge);
    for (size_t i = 0; i < dB_local.size(); ++i) dB[i] += dB_local[i], dC[i] += dC_local[i];
  }
}

// dC[b, n, t] += sum_c grad[b, c, t] h_t[n] (ReadoutGradJob): the states walked forward, each
// thread owning whole channels and its own dC, merged at the end.
template <typename T>
void cpu_readout_dC(const ScanInputs& in, const Tensor& grad_in, const Tensor& dC_out) {
  using C = compute_t<T>;
  const ScanView<T> v(in);
  const int64_t L = v.length, N = v.N;
  const T* grad = grad_in.data<T>();
  C* dC = dC_out.data<C>();
  std::mutex merge;
#pragma omp parallel if (v.batch * v.channels * L * N > 32768)
  {
    std::vector<C> dC_local(static_cast<size_t>(v.batch * N * L), C(0));
    std::vector<C> h(static_cast<size_t>(N));
#pragma omp for
    for (int64_t c = 0; c < v.channels; ++c) {
      for (int64_t b = 0; b < v.batch; ++b) {
        const int64_t row = (b * v.channels + c) * L;
        std::fill(h.begin(), h.end(), C(0));
        for (int64_t t = 0; t < L; ++t) {
          advance_states(v, b, c, t, v.dt(v.pre_dt(c, row + t)), static_cast<C>(v.u[row + t]),
                         h.data());
          const C g = static_cast<C>(grad[row + t]);
          for (int64_t n = 0; n < N; ++n) dC_local[(b * N + n) * L + t] += g * h[n];
        }
      }
    }
    const std::lock_guard<std::mutex> lock(merge);
    for (size_t i = 0; i < dC_local.size(); ++i) dC[i] += dC_local[i];
  }
}

template <typename T>
void cpu_scan_step(const ScanInputs& in, const Tensor& state, const Tensor& y_out) {
  using C = compute_t<T>;
  const ScanView<T> v(in);  // length 1: B, C are [batch, N], indexed at t = 0
  C* h = state.data<C>();
  T* y = y_out.data<T>();
#pragma omp parallel for collapse(2) if (v.batch * v.channels * v.N > 32768)
  for (int64_t b = 0; b < v.batch; ++b) {
    for (int64_t c = 0; c < v.channels; ++c) {
      const int64_t i = b * v.channels + c;
      const C u = static_cast<C>(v.u[i]);
      C out = advance(v, b, c, 0, v.dt(v.pre_dt(c, i)), u, h + i * v.N) + v.d(c) * u;
      if (v.z) out *= math::unary_forward<UnaryOp::silu, C>(v.z[i], C(0));
      y[i] = static_cast<T>(out);
    }
  }
}

// ---- device dispatch ---------------------------------------------------------------------------

// CUDA kernels hold N <= cuda::kMaxScanState states in registers; larger N runs on the CPU.
bool cuda_kernel_fits(const ScanInputs& in) {
  if (!in.u.is_cuda() || in.A.size(1) <= cuda::kMaxScanState) return in.u.is_cuda();
  static std::once_flag notice;
  std::call_once(notice, [&] {
    fmt::print(stderr,
               "selective_scan: state size N = {} exceeds the CUDA kernels' {}; running the CPU "
               "reference kernel (with copies) instead\n",
               in.A.size(1), cuda::kMaxScanState);
  });
  return false;
}

ScanInputs to_cpu(const ScanInputs& in) {
  return {to_cpu(in.u), to_cpu(in.delta), to_cpu(in.A),          to_cpu(in.B),     to_cpu(in.C),
          to_cpu(in.D), to_cpu(in.z),     to_cpu(in.delta_bias), in.delta_softplus};
}

}  // namespace

namespace scan_dispatch {

// The forward: the CPU kernel job by job when the CUDA kernels do not fit.
void scan_forward(const std::vector<ScanForwardJob>& jobs) {
  if (jobs.empty()) return;
  if (cuda_kernel_fits(jobs[0].in)) return cuda::selective_scan_forward(jobs);
  auto run = [](const ScanInputs& x, const Tensor& y, const Tensor& last) {
    dispatch_floating(x.u.dtype(), "selective_scan",
                      [&]<typename T>() { cpu_scan_forward<T>(x, y, last); });
  };
  for (const ScanForwardJob& job : jobs) {
    if (!job.in.u.is_cuda()) {
      run(job.in, job.y, job.last_state);
    } else {
      on_host({job.y, job.last_state},
              [&](const std::vector<Tensor>& h) { run(to_cpu(job.in), h[0], h[1]); });
    }
  }
}

ScanGradients new_gradients(const ScanInputs& in, const Tensor& shared_dC) {
  const DType dtype = in.u.dtype(), state = scan_state_dtype(dtype);
  const Device device = in.u.device();
  auto zeros = [&](const Tensor& like, DType type) {
    return like.defined() ? Tensor::zeros(like.shape(), type, device) : Tensor();
  };
  // du, ddelta and dz are written once per element by both kernels; the rest are sums.
  auto empty = [&](const Tensor& like) {
    return like.defined() ? Tensor::empty(like.shape(), dtype, device) : Tensor();
  };
  return {.du = empty(in.u),
          .ddelta = empty(in.delta),
          .dA = zeros(in.A, state),
          .dB = zeros(in.B, state),
          .dC = shared_dC.defined() ? shared_dC : zeros(in.C, state),
          .dD = zeros(in.D, state),
          .dz = empty(in.z),
          .ddelta_bias = zeros(in.delta_bias, state)};
}

// The backward of every job, dispatched as in scan_forward.
void scan_backward(const std::vector<ScanBackwardJob>& jobs) {
  if (jobs.empty()) return;
  if (cuda_kernel_fits(jobs[0].in)) return cuda::selective_scan_backward(jobs);
  auto run = [](const ScanInputs& x, const Tensor& gy, const Tensor& glast, const ScanGradients& g,
                const std::vector<ScanReader>& readers) {
    dispatch_floating(x.u.dtype(), "selective_scan backward",
                      [&]<typename T>() { cpu_scan_backward<T>(x, gy, glast, g, readers); });
  };
  for (const ScanBackwardJob& job : jobs) {
    const ScanGradients& g = job.grads;
    if (!job.in.u.is_cuda()) {
      run(job.in, job.grad_y, job.grad_last_state, g, job.readers);
      continue;
    }
    std::vector<ScanReader> readers;
    for (const ScanReader& r : job.readers) readers.push_back({to_cpu(r.C), to_cpu(r.grad)});
    on_host({g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, g.dz, g.ddelta_bias},
            [&](const std::vector<Tensor>& h) {
              run(to_cpu(job.in), to_cpu(job.grad_y), to_cpu(job.grad_last_state),
                  {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]}, readers);
            });
  }
}

// The dC of every read-out job, dispatched as in scan_forward.
void readout_dC(const std::vector<ReadoutGradJob>& jobs) {
  if (jobs.empty()) return;
  if (cuda_kernel_fits(jobs[0].in)) return cuda::selective_scan_readout_dC(jobs);
  auto run = [](const ScanInputs& x, const Tensor& grad, const Tensor& dC) {
    dispatch_floating(x.u.dtype(), "dense_readout_pass backward",
                      [&]<typename T>() { cpu_readout_dC<T>(x, grad, dC); });
  };
  for (const ReadoutGradJob& job : jobs) {
    if (!job.in.u.is_cuda()) {
      run(job.in, job.grad, job.dC);
    } else {
      on_host({job.dC},
              [&](const std::vector<Tensor>& h) { run(to_cpu(job.in), to_cpu(job.grad), h[0]); });
    }
  }
}

Tensor as_input(const Tensor& grad, DType dtype) {
  return grad.defined() ? grad.to(dtype) : grad;
}

std::vector<Tensor> operand_gradients(const ScanGradients& g, DType dtype) {
  return {g.du,
          g.ddelta,
          as_input(g.dA, dtype),
          as_input(g.dB, dtype),
          as_input(g.dC, dtype),
          as_input(g.dD, dtype),
          g.dz,
          as_input(g.ddelta_bias, dtype)};
}

Tensor chunk_entry_for(const ScanInputs& in, bool backward_follows) {
  return backward_follows && cuda_kernel_fits(in) ? cuda::selective_scan_chunk_entry(in) : Tensor();
}

}  // namespace scan_dispatch

namespace {

Tensor contiguous_or_undefined(const Tensor& t) {
  return t.defined() ? t.contiguous() : t;
}

}  // namespace

using namespace scan_dispatch;

ScanResult selective_scan(const ScanInputs& inputs, bool return_last_state) {
  const ScanInputs in = checked_operands(inputs, false, "selective_scan");
  const DType dtype = in.u.dtype();
  ScanResult result{.y = Tensor::empty(in.u.shape(), dtype, in.u.device())};
  if (return_last_state) {
    result.last_state = Tensor::empty({in.u.size(0), in.u.size(1), in.A.size(1)},
                                      scan_state_dtype(dtype), in.u.device());
  }
  const std::vector<Tensor> differentiable{inputs.u, inputs.delta, inputs.A, inputs.B,
                                           inputs.C, inputs.D,     inputs.z, inputs.delta_bias};
  const Tensor chunk_entry =
      chunk_entry_for(in, grad_enabled() && any_requires_grad(differentiable));
  scan_forward({{in, result.y, result.last_state, chunk_entry}});
  std::vector<Tensor> outputs{result.y};
  if (return_last_state) outputs.push_back(result.last_state);
  record("selective_scan", differentiable, outputs,
         [in, return_last_state, chunk_entry](const BackwardArgs& args) {
           const ScanGradients g = new_gradients(in);
           scan_backward({{in,
                           args.grad(0).contiguous(),
                           return_last_state ? contiguous_or_undefined(args.grad(1)) : Tensor(),
                           g,
                           chunk_entry,
                           {}}});
           return operand_gradients(g, in.u.dtype());
         });
  return result;
}

std::vector<Tensor> selective_scans_shared_C(const std::vector<ScanInputs>& scans,
                                             const Tensor& C) {
  const char* op = "selective_scans_shared_C";
  std::vector<ScanInputs> ins;
  std::vector<Tensor> differentiable;
  // Contiguous once for all scans (checked_operands would otherwise copy a strided C per scan).
  const Tensor shared_C = C.defined() ? C.detach().contiguous() : C;
  for (size_t j = 0; j < scans.size(); ++j) {
    ScanInputs s = scans[j];
    DSSM_CHECK(!s.C.defined() && !s.D.defined() && !s.z.defined(), op,
               "scan {}: expected no C, D or z of its own (C is shared, D and z are not read)", j);
    s.C = shared_C;
    ins.push_back(checked_operands(s, false, op));
    const ScanInputs& first = ins.front();
    DSSM_CHECK(
        ins.back().u.shape() == first.u.shape() && ins.back().A.shape() == first.A.shape(), op,
        "expected every scan of the shapes of scan 0 (u {}, A {}), got scan {}: u {}, A {}",
        describe(first.u), describe(first.A), j, describe(ins.back().u), describe(ins.back().A));
    for (const Tensor& t : {s.u, s.delta, s.A, s.B, s.delta_bias}) differentiable.push_back(t);
  }
  differentiable.push_back(C);
  const bool backward_follows = grad_enabled() && any_requires_grad(differentiable);
  std::vector<ScanForwardJob> jobs;
  std::vector<Tensor> ys, entries;
  for (const ScanInputs& in : ins) {
    ys.push_back(Tensor::empty(in.u.shape(), in.u.dtype(), in.u.device()));
    entries.push_back(chunk_entry_for(in, backward_follows));
    jobs.push_back({in, ys.back(), Tensor(), entries.back()});
  }
  scan_forward(jobs);
  record(op, differentiable, ys, [ins, entries](const BackwardArgs& args) {
    const DType dtype = ins.front().u.dtype();
    const Tensor dC =
        Tensor::zeros(ins.front().C.shape(), scan_state_dtype(dtype), ins.front().C.device());
    std::vector<ScanBackwardJob> jobs;
    for (size_t j = 0; j < ins.size(); ++j) {
      jobs.push_back(
          {ins[j], args.grad(j).contiguous(), Tensor(), new_gradients(ins[j], dC), entries[j], {}});
    }
    scan_backward(jobs);
    std::vector<Tensor> grads;
    for (const ScanBackwardJob& job : jobs) {
      const ScanGradients& g = job.grads;
      for (const Tensor& t : {g.du, g.ddelta, as_input(g.dA, dtype), as_input(g.dB, dtype),
                              as_input(g.ddelta_bias, dtype)}) {
        grads.push_back(t);
      }
    }
    grads.push_back(as_input(dC, dtype));
    return grads;
  });
  return ys;
}

Tensor selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& delta_bias,
                      bool delta_softplus) {
  return selective_scan({u, delta, A, B, C, D, z, delta_bias, delta_softplus}).y;
}

Tensor selective_scan_step(const ScanInputs& inputs, const Tensor& state) {
  const char* op = "selective_scan_step";
  const ScanInputs in = checked_operands(inputs, true, op);
  DSSM_CHECK(!any_requires_grad({inputs.u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D,
                                 inputs.z, inputs.delta_bias}),
             op, "not differentiable: run it under NoGradGuard (or use selective_scan to train)");
  const Shape state_shape{in.u.size(0), in.u.size(1), in.A.size(1)};
  DSSM_CHECK(state.defined() && state.shape() == state_shape &&
                 state.dtype() == scan_state_dtype(in.u.dtype()) &&
                 state.device() == in.u.device() && state.is_contiguous(),
             op, "expected a contiguous state {}{} on {}, got {}",
             dtype_name(scan_state_dtype(in.u.dtype())), shape_str(state_shape),
             in.u.device().str(), state.defined() ? describe(state) : "none");
  Tensor y = Tensor::empty(in.u.shape(), in.u.dtype(), in.u.device());
  if (cuda_kernel_fits(in)) {
    cuda::selective_scan_step(in, state, y);
  } else if (!in.u.is_cuda()) {
    dispatch_floating(in.u.dtype(), op, [&]<typename T>() { cpu_scan_step<T>(in, state, y); });
  } else {
    on_host({state, y}, [&](const std::vector<Tensor>& h) {
      dispatch_floating(in.u.dtype(), op,
                        [&]<typename T>() { cpu_scan_step<T>(to_cpu(in), h[0], h[1]); });
    });
  }
  return y;
}

namespace {

// Gradchecks: batch 2, channels 3, length 7, N 4. A < 0 as in Mamba (A = -exp(A_log)); delta
// positive when used without softplus.
constexpr int64_t kB = 2, kD = 3, kL = 7, kN = 4;

std::vector<Tensor> scan_case_inputs(Generator& g) {
  return {random_normal(g, {kB, kD, kL}),          random_uniform(g, {kB, kD, kL}, 0.1, 0.8),
          random_uniform(g, {kD, kN}, -1.5, -0.2), random_normal(g, {kB, kN, kL}),
          random_normal(g, {kB, kN, kL}),          random_normal(g, {kD}),
          random_normal(g, {kB, kD, kL}),          random_normal(g, {kD}) * 0.3};
}

const OpRegistration kScanPlain{{.name = "selective_scan",
                                 .make_inputs =
                                     [](Generator& g) {
                                       std::vector<Tensor> in = scan_case_inputs(g);
                                       in.resize(6);
                                       return in;
                                     },
                                 .run =
                                     [](const std::vector<Tensor>& in) {
                                       return selective_scan(in[0], in[1], in[2], in[3], in[4],
                                                             in[5]);
                                     }}};
const OpRegistration kScanGated{{.name = "selective_scan_gated",
                                 .make_inputs = scan_case_inputs,
                                 .run = [](const std::vector<Tensor>& in) {
                                   return selective_scan(in[0], in[1], in[2], in[3], in[4], in[5],
                                                         in[6], in[7], true);
                                 }}};
// Gradient through the returned last state as well: out + sum_n last_state (broadcast over t).
const OpRegistration kScanLastState{
    {.name = "selective_scan_last_state",
     .make_inputs = scan_case_inputs,
     .run = [](const std::vector<Tensor>& in) {
       const ScanResult r = selective_scan(
           {in[0], in[1], in[2], in[3], in[4], Tensor(), Tensor(), in[7], true}, true);
       return r.y + sum(r.last_state * r.last_state, {2}, true);
     }}};

}  // namespace
}  // namespace dssm
