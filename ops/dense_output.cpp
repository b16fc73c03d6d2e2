// DenseMamba's fused output (see the header): forward, backward, CPU kernels, dispatch.
// With s = sum_i r_i, q = own + g s + D_c x (the fused hidden read-out plus the skip) and
// y = q silu(z), the gradients, with dq = dy silu(z), are
//   d own = dq,   d r_i = dq g (the same for every i),   dg = dq s,   dx = dq D_c,
//   dz = dy q silu'(z),   dD_c = sum_{b,t} dq x.
// The backward recomputes s and q from the inputs, which the graph keeps anyway.
#include "ops/dense_output.hpp"

#include <algorithm>
#include <type_traits>

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "cuda/kernels_ssm.hpp"
#include "ops/cpu_vectorised.hpp"
#include "ops/elementwise.hpp"
#include "ops/elementwise_math.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

constexpr const char* kOp = "dense_mamba_output";

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// ---- CPU kernels -------------------------------------------------------------------------------
// Row by row, each pass a `#pragma omp simd` loop that GCC vectorises: f32 and bf16 through the
// vectorised f32 forms of silu and silu' (ops/cpu_vectorised.hpp), f64 through the scalar
// definitions (ops/elementwise_math.hpp).

template <typename T>
[[gnu::always_inline]] inline compute_t<T> ld(const T* p, int64_t i) {
  if constexpr (std::is_same_v<compute_t<T>, float>) {
    return vec::load(p, i);
  } else {
    return static_cast<compute_t<T>>(p[i]);
  }
}
template <typename T>
[[gnu::always_inline]] inline void st(T* p, int64_t i, compute_t<T> v) {
  if constexpr (std::is_same_v<compute_t<T>, float>) {
    vec::store(p, i, v);
  } else {
    p[i] = static_cast<T>(v);
  }
}
template <typename C>
[[gnu::always_inline]] inline C silu_of(C z) {
  if constexpr (std::is_same_v<C, float>) {
    return vec::unary_forward<UnaryOp::silu>(z, 0.0f);
  } else {
    return math::unary_forward<UnaryOp::silu, C>(z, C(0));
  }
}
template <typename C>
[[gnu::always_inline]] inline C silu_grad_of(C z) {
  if constexpr (std::is_same_v<C, float>) {
    return vec::unary_derivative<UnaryOp::silu>(z, 0.0f);
  } else {
    return math::unary_derivative<UnaryOp::silu, C>(z, C(0), C(0));
  }
}

// s[t] = sum_i r_i[offset + t] over the row's L steps.
template <typename T>
void row_readout_sum(const std::vector<const T*>& readouts, int64_t offset, int64_t L,
                     compute_t<T>* s) {
  std::fill(s, s + L, compute_t<T>(0));
  for (const T* r : readouts) {
#pragma omp simd
    for (int64_t t = 0; t < L; ++t) s[t] += ld(r, offset + t);
  }
}

template <typename T>
std::vector<const T*> pointers(const std::vector<Tensor>& tensors) {
  std::vector<const T*> out;
  for (const Tensor& t : tensors) out.push_back(t.data<T>());
  return out;
}

template <typename T>
void cpu_forward(const DenseOutputInputs& in, const Tensor& y_out) {
  using C = compute_t<T>;
  const int64_t channels = in.own.size(1), L = in.own.size(2);
  const int64_t rows = in.own.size(0) * channels;
  const std::vector<const T*> readouts = pointers<T>(in.readouts);
  const T *own = in.own.data<T>(), *gate = data_or_null<T>(in.gate), *x = in.x.data<T>();
  const T *D = in.D.data<T>(), *z = in.z.data<T>();
  T* y = y_out.data<T>();
#pragma omp parallel if (rows * L > 32768)
  {
    std::vector<C> s(static_cast<size_t>(L));
#pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const C d = static_cast<C>(D[r % channels]);
      const int64_t o = r * L;
      row_readout_sum(readouts, o, L, s.data());
      if (gate) {
#pragma omp simd
        for (int64_t t = 0; t < L; ++t) s[t] *= ld(gate, o + t);
      }
#pragma omp simd
      for (int64_t t = 0; t < L; ++t) {
        const C q = ld(own, o + t) + s[t] + d * ld(x, o + t);
        st(y, o + t, q * silu_of(ld(z, o + t)));
      }
    }
  }
}

// grads.own, .readout, .gate, .x, .z in T (readout and gate undefined when not needed);
// grads.D in the compute type, zeroed by the caller.
template <typename T>
void cpu_backward(const DenseOutputInputs& in, const Tensor& gy_in, const DenseOutputGrads& out) {
  using C = compute_t<T>;
  const int64_t batch = in.own.size(0), channels = in.own.size(1), L = in.own.size(2);
  const std::vector<const T*> readouts = pointers<T>(in.readouts);
  const T *own = in.own.data<T>(), *gate = data_or_null<T>(in.gate), *x = in.x.data<T>();
  const T *D = in.D.data<T>(), *z = in.z.data<T>(), *gy = gy_in.data<T>();
  T *d_own = out.own.data<T>(), *d_readout = data_or_null<T>(out.readout);
  T *d_gate = data_or_null<T>(out.gate), *dx = out.x.data<T>(), *dz = out.z.data<T>();
  C* dD = out.D.data<C>();
  // One thread per channel: dD[c] has a single writer.
#pragma omp parallel if (batch * channels * L > 32768)
  {
    // Row buffers: the read-outs' sum (then the gate's gradient), the gate, and a sink for
    // d r when it is not written; so that the step loop has no branches and vectorises.
    std::vector<C> s(static_cast<size_t>(L)), g(static_cast<size_t>(L), C(1));
    std::vector<T> sink(d_readout ? 0 : static_cast<size_t>(L));
#pragma omp for
    for (int64_t c = 0; c < channels; ++c) {
      const C d = static_cast<C>(D[c]);
      C dD_c = C(0);
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t o = (b * channels + c) * L;
        row_readout_sum(readouts, o, L, s.data());
        if (gate) {
#pragma omp simd
          for (int64_t t = 0; t < L; ++t) g[t] = ld(gate, o + t);
        }
        T* dr = d_readout ? d_readout + o : sink.data();
#pragma omp simd reduction(+ : dD_c)
        for (int64_t t = 0; t < L; ++t) {
          const C zt = ld(z, o + t), xt = ld(x, o + t), dy = ld(gy, o + t);
          const C q = ld(own, o + t) + g[t] * s[t] + d * xt;
          const C dq = dy * silu_of(zt);
          st(d_own, o + t, dq);
          st(dr, t, dq * g[t]);
          st(dx, o + t, dq * d);
          st(dz, o + t, dy * q * silu_grad_of(zt));
          dD_c += dq * xt;
          s[t] *= dq;  // s dq: the gate's gradient
        }
        if (d_gate) {
#pragma omp simd
          for (int64_t t = 0; t < L; ++t) st(d_gate, o + t, s[t]);
        }
      }
      dD[c] += dD_c;
    }
  }
}

// ---- checks and dispatch -----------------------------------------------------------------------

// The inputs detached and contiguous, after checking that they fit together.
DenseOutputInputs checked_inputs(const Tensor& own, const std::vector<Tensor>& readouts,
                                 const Tensor& gate, const Tensor& x, const Tensor& D,
                                 const Tensor& z) {
  DSSM_CHECK(own.defined() && own.dim() == 3 && is_floating(own.dtype()), kOp,
             "expected own (the layer's read-out) of shape [batch, channels, length], got {}",
             own.defined() ? describe(own) : "none");
  auto same_as_own = [&](const Tensor& t, const std::string& name) {
    DSSM_CHECK(t.defined() && t.shape() == own.shape() && t.dtype() == own.dtype() &&
                   t.device() == own.device(),
               kOp, "expected {} shaped like own ({}), got {}", name, describe(own),
               t.defined() ? describe(t) : "none");
    return t.detach().contiguous();
  };
  DenseOutputInputs in{.own = own.detach().contiguous()};
  for (size_t i = 0; i < readouts.size(); ++i) {
    in.readouts.push_back(same_as_own(readouts[i], fmt::format("readouts[{}]", i)));
  }
  if (gate.defined()) in.gate = same_as_own(gate, "gate");
  in.x = same_as_own(x, "x");
  in.z = same_as_own(z, "z");
  DSSM_CHECK(D.defined() && D.shape() == Shape{own.size(1)} && D.dtype() == own.dtype() &&
                 D.device() == own.device(),
             kOp, "expected D {}[{}] on {}, got {}", dtype_name(own.dtype()), own.size(1),
             own.device().str(), D.defined() ? describe(D) : "none");
  in.D = D.detach().contiguous();
  return in;
}

// The CUDA kernels take at most cuda::kMaxDenseReadouts read-outs: more are summed into the last
// one first (their gradients are all the same, dq g, so the backward is unchanged).
DenseOutputInputs folded_for_device(DenseOutputInputs in) {
  const size_t most = static_cast<size_t>(cuda::kMaxDenseReadouts);
  if (!in.own.is_cuda() || in.readouts.size() <= most) return in;
  NoGradGuard no_grad;
  Tensor rest = in.readouts[most - 1];
  for (size_t i = most; i < in.readouts.size(); ++i) rest = rest + in.readouts[i];
  in.readouts.resize(most);
  in.readouts.back() = rest;
  return in;
}

// `in` as the kernels take it (folded_for_device).
DenseOutputGrads backward(const DenseOutputInputs& in, const Tensor& grad_y) {
  const Tensor& own = in.own;
  auto like_own = [&] { return Tensor::empty(own.shape(), own.dtype(), own.device()); };
  DenseOutputGrads g{.own = like_own(),
                     .readout = in.readouts.empty() || !in.gate.defined() ? Tensor() : like_own(),
                     .gate = in.gate.defined() ? like_own() : Tensor(),
                     .x = like_own(),
                     .z = like_own(),
                     .D = Tensor::zeros(in.D.shape(), scan_state_dtype(own.dtype()), own.device())};
  const Tensor gy = grad_y.contiguous();
  if (own.is_cuda()) {
    cuda::dense_mamba_output_backward(in, gy, g);
  } else {
    dispatch_floating(own.dtype(), kOp, [&]<typename T>() { cpu_backward<T>(in, gy, g); });
  }
  // Without a gate d r_i = dq = d own.
  if (!in.readouts.empty() && !g.readout.defined()) g.readout = g.own;
  g.D = g.D.to(own.dtype());
  return g;
}

}  // namespace

Tensor dense_mamba_output(const Tensor& own_in, const std::vector<Tensor>& readouts_in,
                          const Tensor& gate_in, const Tensor& x_in, const Tensor& D_in,
                          const Tensor& z_in) {
  const DenseOutputInputs in =
      folded_for_device(checked_inputs(own_in, readouts_in, gate_in, x_in, D_in, z_in));
  Tensor y = Tensor::empty(in.own.shape(), in.own.dtype(), in.own.device());
  if (in.own.is_cuda()) {
    cuda::dense_mamba_output_forward(in, y);
  } else {
    dispatch_floating(in.own.dtype(), kOp, [&]<typename T>() { cpu_forward<T>(in, y); });
  }
  // Inputs in the order own, r_1 .. r_m, gate, x, D, z.
  std::vector<Tensor> inputs{own_in};
  inputs.insert(inputs.end(), readouts_in.begin(), readouts_in.end());
  inputs.insert(inputs.end(), {gate_in, x_in, D_in, z_in});
  record(kOp, inputs, {y}, [in, readouts = readouts_in.size()](const BackwardArgs& args) {
    const DenseOutputGrads g = backward(in, args.grad());
    std::vector<Tensor> grads{g.own};
    grads.insert(grads.end(), readouts, g.readout);
    grads.insert(grads.end(), {g.gate, g.x, g.D, g.z});
    return grads;
  });
  return y;
}

namespace {

// Gradchecks: batch 2, channels 3, length 5; two read-outs with a gate, and one without.
const OpRegistration kGated{
    {.name = "dense_mamba_output",
     .make_inputs =
         [](Generator& g) {
           std::vector<Tensor> in;
           for (int i = 0; i < 5; ++i) in.push_back(random_normal(g, {2, 3, 5}));  // own r1 r2 g x
           in.push_back(random_normal(g, {3}));                                    // D
           in.push_back(random_normal(g, {2, 3, 5}));                              // z
           return in;
         },
     .run =
         [](const std::vector<Tensor>& in) {
           return dense_mamba_output(in[0], {in[1], in[2]}, in[3], in[4], in[5], in[6]);
         }}};
const OpRegistration kUngated{
    {.name = "dense_mamba_output_ungated",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 5}), random_normal(g, {2, 3, 5}),
                                      random_normal(g, {2, 3, 5}), random_normal(g, {3}),
                                      random_normal(g, {2, 3, 5})};
         },
     .run =
         [](const std::vector<Tensor>& in) {
           return dense_mamba_output(in[0], {in[1]}, Tensor(), in[2], in[3], in[4]);
         }}};

}  // namespace
}  // namespace dssm
