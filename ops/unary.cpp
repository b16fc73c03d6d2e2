// Unary elementwise ops y = f(x) and their backward dx = dy * f'(x).
// The formulas are in ops/elementwise_math.hpp, shared with the CUDA kernels.
// The f32 (and bf16) CPU kernels use the vectorised f32 forms of ops/cpu_vectorised.hpp through
// ops/cpu_vectorised_unary.hpp (all ops but pow); f64 and pow run the scalar definition.
#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
#include "ops/cpu_vectorised_unary.hpp"
#include "ops/elementwise.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

// Ops whose derivative is cheaper from the output y than from the input x. Backward saves only
// the one it needs, and unary_derivative reads only that one.
constexpr bool derivative_uses_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
         op == UnaryOp::sigmoid || op == UnaryOp::tanh;
}

const char* unary_name(UnaryOp op) {
  constexpr const char* names[] = {"neg",     "exp",  "log",  "sqrt",       "rsqrt",
                                   "sigmoid", "tanh", "silu", "gelu",       "softplus",
                                   "relu",    "abs",  "pow",  "add_scalar", "mul_scalar"};
  return names[static_cast<int>(op)];
}

void cpu_unary(UnaryOp op, const Tensor& out, const Tensor& x, double param) {
  dispatch_floating(x.dtype(), unary_name(op), [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_unary(op, [&]<UnaryOp kOp>() {
      const T* in = x.data<T>();
      T* o = out.data<T>();
      const int64_t n = x.numel();
      const C p = static_cast<C>(param);
      if constexpr (std::is_same_v<C, float> && vec::has_unary<kOp>) {
        return vec::unary_forward<kOp>(in, o, n, p);
      }
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) {
        o[i] = static_cast<T>(math::unary_forward<kOp, C>(static_cast<C>(in[i]), p));
      }
    });
  });
}

// grad_in = grad_out * f'(saved), `saved` being x or y as derivative_uses_output says.
void cpu_unary_backward(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out,
                        const Tensor& saved, double param) {
  dispatch_floating(saved.dtype(), unary_name(op), [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_unary(op, [&]<UnaryOp kOp>() {
      const T* g = grad_out.data<T>();
      const T* s = saved.data<T>();
      T* gi = grad_in.data<T>();
      const int64_t n = saved.numel();
      const C p = static_cast<C>(param);
      if constexpr (std::is_same_v<C, float> && vec::has_unary<kOp>) {
        return vec::unary_backward<kOp>(g, s, gi, n, p);
      }
#pragma omp parallel for simd if (n > 32768)
      for (int64_t i = 0; i < n; ++i) {
        const C v = static_cast<C>(s[i]);
        gi[i] = static_cast<T>(static_cast<C>(g[i]) * math::unary_derivative<kOp, C>(v, v, p));
      }
    });
  });
}

Tensor unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& saved, double param) {
  const Tensor g = grad_out.contiguous();
  Tensor grad_in = Tensor::empty(saved.shape(), saved.dtype(), saved.device());
  if (saved.is_cuda()) {
    cuda::unary_backward(op, grad_in, g, saved, param);
  } else {
    cpu_unary_backward(op, grad_in, g, saved, param);
  }
  return grad_in;
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& input, double param) {
  DSSM_CHECK(is_floating(input.dtype()), unary_name(op), "expected a floating tensor, got {}",
             describe(input));
  const Tensor x = input.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    cuda::unary(op, y, x, param);
  } else {
    cpu_unary(op, y, x, param);
  }
  const Tensor saved = derivative_uses_output(op) ? y.detach() : x.detach();
  record(unary_name(op), {input}, {y}, [op, saved, param](const BackwardArgs& args) {
    return std::vector<Tensor>{unary_backward(op, args.grad(), saved, param)};
  });
  return y;
}

Tensor neg(const Tensor& x) {
  return unary(UnaryOp::neg, x);
}
Tensor exp(const Tensor& x) {
  return unary(UnaryOp::exp, x);
}
Tensor log(const Tensor& x) {
  return unary(UnaryOp::log, x);
}
Tensor sqrt(const Tensor& x) {
  return unary(UnaryOp::sqrt, x);
}
Tensor rsqrt(const Tensor& x) {
  return unary(UnaryOp::rsqrt, x);
}
Tensor sigmoid(const Tensor& x) {
  return unary(UnaryOp::sigmoid, x);
}
Tensor tanh(const Tensor& x) {
  return unary(UnaryOp::tanh, x);
}
Tensor silu(const Tensor& x) {
  return unary(UnaryOp::silu, x);
}
Tensor gelu(const Tensor& x) {
  return unary(UnaryOp::gelu, x);
}
Tensor softplus(const Tensor& x) {
  return unary(UnaryOp::softplus, x);
}
Tensor relu(const Tensor& x) {
  return unary(UnaryOp::relu, x);
}
Tensor abs(const Tensor& x) {
  return unary(UnaryOp::abs, x);
}
Tensor pow(const Tensor& x, double exponent) {
  return unary(UnaryOp::pow, x, exponent);
}
Tensor add_scalar(const Tensor& x, double value) {
  return unary(UnaryOp::add_scalar, x, value);
}
Tensor mul_scalar(const Tensor& x, double value) {
  return unary(UnaryOp::mul_scalar, x, value);
}

namespace {

// Gradchecks. Inputs avoid the points where an op is not differentiable (relu, abs at 0) or not
// defined (log, sqrt, rsqrt, pow at x <= 0).
GradcheckCase unary_case(const char* name, UnaryOp op, double lo, double hi, double param = 0) {
  return {.name = name,
          .make_inputs =
              [lo, hi](Generator& g) {
                return std::vector<Tensor>{random_uniform(g, {3, 5}, lo, hi)};
              },
          .run = [op, param](const std::vector<Tensor>& in) { return unary(op, in[0], param); }};
}

Tensor away_from_zero(Generator& g) {  // |x| in [0.2, 2] with alternating signs
  std::vector<double> signs(15);
  for (size_t i = 0; i < signs.size(); ++i) signs[i] = i % 2 ? 1.0 : -1.0;
  return random_uniform(g, {3, 5}, 0.2, 2.0) * Tensor::from_vector(signs, {3, 5});
}

const OpRegistration kNeg{unary_case("neg", UnaryOp::neg, -2, 2)};
const OpRegistration kExp{unary_case("exp", UnaryOp::exp, -2, 2)};
const OpRegistration kLog{unary_case("log", UnaryOp::log, 0.2, 3)};
const OpRegistration kSqrt{unary_case("sqrt", UnaryOp::sqrt, 0.2, 3)};
const OpRegistration kRsqrt{unary_case("rsqrt", UnaryOp::rsqrt, 0.2, 3)};
const OpRegistration kSigmoid{unary_case("sigmoid", UnaryOp::sigmoid, -4, 4)};
const OpRegistration kTanh{unary_case("tanh", UnaryOp::tanh, -3, 3)};
const OpRegistration kSilu{unary_case("silu", UnaryOp::silu, -4, 4)};
const OpRegistration kGelu{unary_case("gelu", UnaryOp::gelu, -4, 4)};
const OpRegistration kSoftplus{unary_case("softplus", UnaryOp::softplus, -4, 4)};
const OpRegistration kPow{unary_case("pow", UnaryOp::pow, 0.2, 3, 2.5)};
const OpRegistration kAddScalar{unary_case("add_scalar", UnaryOp::add_scalar, -2, 2, 0.75)};
const OpRegistration kMulScalar{unary_case("mul_scalar", UnaryOp::mul_scalar, -2, 2, -1.5)};
const OpRegistration kRelu{
    {.name = "relu",
     .make_inputs = [](Generator& g) { return std::vector<Tensor>{away_from_zero(g)}; },
     .run = [](const std::vector<Tensor>& in) { return relu(in[0]); }}};
const OpRegistration kAbs{
    {.name = "abs",
     .make_inputs = [](Generator& g) { return std::vector<Tensor>{away_from_zero(g)}; },
     .run = [](const std::vector<Tensor>& in) { return abs(in[0]); }}};

}  // namespace
}  // namespace dssm
