// Inverted dropout (Srivastava et al. 2014): y_i = x_i * keep_i / (1 - p), where
// keep_i = [uniform_f32(philox(seed, first + i)) >= p]. The mask is a pure function of
// (seed, first + i), so backward recomputes it instead of saving it: dx = g * keep / (1 - p),
// i.e. the very same map applied to g.
#include "ops/dropout.hpp"
#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

void cpu_dropout(const Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t first) {
  dispatch_floating(x.dtype(), "dropout", [&]<typename T>() {
    using C = compute_t<T>;
    const T* in = x.data<T>();
    T* o = out.data<T>();
    const int64_t n = x.numel();
    const float threshold = static_cast<float>(p);
    const C scale = static_cast<C>(1.0 / (1.0 - p));
#pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      const bool keep =
          uniform_f32(philox4x32_10(seed, first + static_cast<uint64_t>(i))) >= threshold;
      o[i] = static_cast<T>(keep ? static_cast<C>(in[i]) * scale : C(0));
    }
  });
}

// y = x * mask(seed, first) / (1 - p); differentiable, its backward being itself.
Tensor apply_dropout_mask(const Tensor& input, double p, uint64_t seed, uint64_t first) {
  const Tensor x = input.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) {
    if (out.is_cuda()) {
      cuda::dropout(out, x, p, seed, first);
    } else {
      cpu_dropout(out, x, p, seed, first);
    }
  }
  record("dropout", {input}, {out}, [p, seed, first](const BackwardArgs& args) {
    return std::vector<Tensor>{apply_dropout_mask(args.grad(), p, seed, first)};
  });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  DSSM_CHECK(is_floating(x.dtype()), "dropout", "expected a floating tensor, got {}", describe(x));
  DSSM_CHECK(p >= 0 && p < 1, "dropout", "expected p in [0, 1), got {}", p);
  if (!training || p == 0) return x;
  const uint64_t first = gen.advance(static_cast<uint64_t>(x.numel()));
  return apply_dropout_mask(x, p, gen.seed(), first);
}

namespace {

// A fresh generator with a fixed seed in every run, so that all runs use the same mask.
const OpRegistration kDropout{{.name = "dropout",
                               .make_inputs =
                                   [](Generator& g) {
                                     return std::vector<Tensor>{random_normal(g, {4, 5})};
                                   },
                               .run =
                                   [](const std::vector<Tensor>& in) {
                                     Generator gen(42);
                                     return dropout(in[0], 0.3, true, gen);
                                   }}};

}  // namespace
}  // namespace dssm
