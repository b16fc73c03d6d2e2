// Recording nodes during forward, and the Tensor methods that read or set autograd state.
#include "autograd/graph.hpp"

#include "autograd/grad_mode.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

AutogradMeta& meta_of(const Tensor& t) {
  auto& impl = t.impl();
  if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  return *impl.autograd;
}

// The edge along which a gradient for `t` must travel.
Edge edge_to(const Tensor& t) {
  if (!t.defined() || !t.impl().autograd || !t.impl().autograd->requires_grad) return {};
  AutogradMeta& meta = *t.impl().autograd;
  if (meta.grad_fn) return {meta.grad_fn, meta.output_slot};
  if (!meta.accumulator) {
    meta.accumulator = std::make_shared<Node>();
    meta.accumulator->name = "accumulate_grad";
    meta.accumulator->is_accumulator = true;
    meta.accumulator->leaf = t.impl_ptr();
    meta.accumulator->outputs.push_back({t.shape(), t.dtype(), t.device()});
  }
  return {meta.accumulator, 0};
}

}  // namespace

bool any_requires_grad(const std::vector<Tensor>& tensors) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : tensors) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<Node>();
  node->name = name;
  for (const Tensor& input : inputs) {
    node->next.push_back(edge_to(input));
    node->input_shapes.push_back(input.defined() ? input.shape() : Shape{});
  }
  node->backward = std::move(backward);
  for (size_t slot = 0; slot < outputs.size(); ++slot) {
    const Tensor& out = outputs[slot];
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
    if (!is_floating(out.dtype())) continue;  // integer outputs carry no gradient
    AutogradMeta& meta = meta_of(out);
    meta.requires_grad = true;
    meta.grad_fn = node;
    meta.output_slot = static_cast<int>(slot);
  }
}

bool Tensor::requires_grad() const {
  return impl().autograd != nullptr && impl().autograd->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  DSSM_CHECK(!requires_grad || is_floating(dtype()), "set_requires_grad",
             "only floating tensors can require a gradient, got {}", describe(*this));
  DSSM_CHECK(
      is_leaf(), "set_requires_grad",
      "can only be set on a leaf (a tensor not produced by a recorded op); use detach() first");
  meta_of(*this).requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const {
  return !impl().autograd || !impl().autograd->grad_fn;
}

Tensor Tensor::grad() const {
  return impl().autograd ? impl().autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  DSSM_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad",
             "gradient {} does not match tensor {}", describe(grad), describe(*this));
  meta_of(*this).grad = grad;
}

void Tensor::zero_grad() const {
  if (impl().autograd) impl().autograd->grad = Tensor();
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(this->impl());
  impl->autograd = nullptr;
  return Tensor(std::move(impl));
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  DSSM_CHECK(requires_grad(), "backward",
             "tensor {} does not require grad (no input of its graph has requires_grad set)",
             describe(*this));
  Tensor seed = grad;
  if (!seed.defined()) {
    DSSM_CHECK(numel() == 1, "backward",
               "a gradient must be given for a non-scalar output {} (only scalars default to 1)",
               describe(*this));
    seed = Tensor::ones(shape(), dtype(), device());
  }
  DSSM_CHECK(seed.shape() == shape(), "backward", "gradient {} does not match output {}",
             describe(seed), describe(*this));
  run_backward({*this}, {seed}, retain_graph);
}

}  // namespace dssm
