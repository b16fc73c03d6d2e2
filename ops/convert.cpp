// Copies that change layout, dtype or device — differentiable, each gradient flowing back
// through the inverse conversion.
#include "autograd/graph.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

Tensor copy_as(const Tensor& x, DType dtype, Device device) {
  Tensor out = Tensor::empty(x.shape(), dtype, device);
  out.copy_from(x);
  return out;
}

}  // namespace

Tensor Tensor::clone() const {
  Tensor out = copy_as(*this, dtype(), device());
  record("clone", {*this}, {out},
         [](const BackwardArgs& args) { return std::vector<Tensor>{args.grad()}; });
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = copy_as(*this, dtype(), device());
  record("contiguous", {*this}, {out},
         [](const BackwardArgs& args) { return std::vector<Tensor>{args.grad()}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = copy_as(*this, target, device());
  if (is_floating(dtype()) && is_floating(target)) {
    record("to_dtype", {*this}, {out}, [source = dtype()](const BackwardArgs& args) {
      return std::vector<Tensor>{args.grad().to(source)};
    });
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = copy_as(*this, dtype(), target);
  record("to_device", {*this}, {out}, [source = device()](const BackwardArgs& args) {
    return std::vector<Tensor>{args.grad().to(source)};
  });
  return out;
}

namespace {

const OpRegistration kContiguous{
    {.name = "contiguous",
     .make_inputs = [](Generator& g) { return std::vector<Tensor>{random_normal(g, {3, 4})}; },
     .run = [](const std::vector<Tensor>& in) { return in[0].transpose(0, 1).contiguous(); }}};
// f64 -> f32 -> f64 loses precision, so the round trip is checked with a looser tolerance.
const OpRegistration kToDtype{
    {.name = "to_dtype",
     .make_inputs = [](Generator& g) { return std::vector<Tensor>{random_normal(g, {3, 4})}; },
     .run = [](const std::vector<Tensor>& in) { return in[0].to(DType::f32).to(DType::f64); },
     .atol = 1e-2,
     .rtol = 1e-2,
     .eps = 1e-3}};

}  // namespace
}  // namespace dssm
