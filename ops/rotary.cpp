// Rotary position encoding (see ops/rotary.hpp): y = x cos + rotate_every_two(x) sin, with
// rotate_every_two(x)_{2i, 2i+1} = (-x_2i+1, x_2i). Both frequency schedules are
// theta_i = base^(-i / divisor), divisor = dim/2 - 1 (RetNet) or dim/2 (LLaMA); the kernels take
// (base, divisor). The angles n theta_i are computed in float64 so that large positions keep
// their precision. Backward: dx = rotation of dy by -n theta_i.
#include "ops/rotary.hpp"

#include <cmath>

#include "autograd/graph.hpp"
#include "cuda/kernels_retention.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

// theta_i = base^(-i / divisor): the divisor of each schedule for `pairs` channel pairs.
double exponent_divisor(RotarySpacing spacing, int64_t pairs) {
  if (spacing == RotarySpacing::llama) return static_cast<double>(pairs);
  return pairs > 1 ? static_cast<double>(pairs - 1) : 1.0;  // one pair: theta_0 = 1
}

double angle_of(int64_t pair, double base, double divisor) {
  return std::pow(base, -static_cast<double>(pair) / divisor);
}

void cpu_rotary(const Tensor& out, const Tensor& x, int64_t offset, bool inverse, double base,
                double divisor) {
  const int64_t rows = x.size(0), length = x.size(1), dim = x.size(2), pairs = dim / 2;
  const double sign = inverse ? -1.0 : 1.0;
  dispatch_floating(x.dtype(), "rotary", [&]<typename T>() {
    using Acc = compute_t<T>;
    const T* in = x.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for if (rows * length * dim > 32768)
    for (int64_t l = 0; l < length; ++l) {
      const double position = static_cast<double>(offset + l);
      for (int64_t i = 0; i < pairs; ++i) {
        const double angle = sign * position * angle_of(i, base, divisor);
        const Acc c = static_cast<Acc>(std::cos(angle)), s = static_cast<Acc>(std::sin(angle));
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t at = (r * length + l) * dim + 2 * i;
          const Acc x0 = static_cast<Acc>(in[at]), x1 = static_cast<Acc>(in[at + 1]);
          // Explicit fused multiply-adds: with x0 * c - x1 * s the compiler contracts the
          // vectorised copy of this loop into FMAs but not its scalar copy, and which copy runs
          // depends on whether `in` and `o` lie close in memory (a runtime alias check), so
          // two calls on the same input could differ by an ulp. fma rounds the same in both.
          o[at] = static_cast<T>(std::fma(x0, c, -(x1 * s)));
          o[at + 1] = static_cast<T>(std::fma(x1, c, x0 * s));
        }
      }
    }
  });
}

Tensor rotate(const Tensor& input, int64_t offset, bool inverse, const RotaryFrequencies& f) {
  DSSM_CHECK(input.dim() >= 2 && input.size(-1) % 2 == 0, "rotary",
             "expected x [..., length, dim] with an even dim, got {}", describe(input));
  DSSM_CHECK(is_floating(input.dtype()), "rotary", "expected a floating tensor, got {}",
             describe(input));
  DSSM_CHECK(offset >= 0, "rotary", "expected offset >= 0, got {}", offset);
  DSSM_CHECK(f.base > 1.0 && std::isfinite(f.base), "rotary",
             "expected a frequency base > 1 (rope_theta), got {}", f.base);
  const double divisor = exponent_divisor(f.spacing, input.size(-1) / 2);
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) {
    const Tensor x3 = x.reshape({-1, x.size(-2), x.size(-1)});
    const Tensor out3 = out.reshape({-1, x.size(-2), x.size(-1)});
    if (x.is_cuda()) {
      cuda::rotary(out3, x3, offset, inverse, f.base, divisor);
    } else {
      cpu_rotary(out3, x3, offset, inverse, f.base, divisor);
    }
  }
  record("rotary", {input}, {out}, [offset, inverse, f](const BackwardArgs& args) {
    return std::vector<Tensor>{rotate(args.grad(), offset, !inverse, f)};
  });
  return out;
}

}  // namespace

double rotary_angle(int64_t pair, int64_t dim, const RotaryFrequencies& frequencies) {
  return angle_of(pair, frequencies.base, exponent_divisor(frequencies.spacing, dim / 2));
}

Tensor rotary(const Tensor& x, int64_t offset, const RotaryFrequencies& frequencies) {
  return rotate(x, offset, false, frequencies);
}

namespace {

// batch 2, heads 2, length 7, dim 4, starting at position 5.
const OpRegistration kRotary{
    {.name = "rotary",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 2, 7, 4})};
         },
     .run = [](const std::vector<Tensor>& in) { return rotary(in[0], 5); }}};

// LLaMA's schedule with a small base, so that every pair turns noticeably.
const OpRegistration kRotaryLlama{
    {.name = "rotary_llama",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 6})};
         },
     .run =
         [](const std::vector<Tensor>& in) {
           return rotary(in[0], 2, {.spacing = RotarySpacing::llama, .base = 50.0});
         }}};

}  // namespace
}  // namespace dssm
