#include "nn/module.hpp"

#include <fmt/format.h>

#include <set>

#include "autograd/grad_mode.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {
namespace {

void check_name(const std::string& name, const char* what) {
  DSSM_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module",
             "invalid {} name '{}' (non-empty, without '.')", what, name);
}

}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor tensor, bool weight_decay) {
  check_name(name, "parameter");
  for (const auto& p : parameters_) {
    DSSM_CHECK(p.name != name, "Module", "parameter '{}' registered twice", name);
  }
  tensor = tensor.detach();
  tensor.set_requires_grad(true);
  parameters_.push_back({name, tensor, weight_decay});
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "module");
  DSSM_CHECK(module != nullptr, "Module", "child '{}' is null", name);
  for (const auto& [existing, _] : children_) {
    DSSM_CHECK(existing != name, "Module", "child module '{}' registered twice", name);
  }
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, std::vector<NamedParameter>& out) const {
  for (const auto& p : parameters_) out.push_back({prefix + p.name, p.tensor, p.weight_decay});
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<NamedParameter> Module::named_parameters() const {
  std::vector<NamedParameter> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (const auto& p : named_parameters()) out.push_back(p.tensor);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t total = 0;
  for (const auto& p : named_parameters()) total += p.tensor.numel();
  return total;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (const auto& p : named_parameters()) out.emplace(p.name, p.tensor.detach());
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::vector<std::string> problems;
  std::set<std::string> seen;
  const auto params = named_parameters();
  for (const auto& p : params) {
    const auto it = state.find(p.name);
    if (it == state.end()) {
      if (strict) problems.push_back(fmt::format("missing tensor '{}'", p.name));
      continue;
    }
    seen.insert(p.name);
    if (it->second.shape() != p.tensor.shape()) {
      problems.push_back(fmt::format("tensor '{}' has shape {}, the model expects {}", p.name,
                                     shape_str(it->second.shape()), shape_str(p.tensor.shape())));
    }
  }
  if (strict) {
    for (const auto& [name, _] : state) {
      if (!seen.count(name)) problems.push_back(fmt::format("unexpected tensor '{}'", name));
    }
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& line : problems) message += "\n  " + line;
    fail("load_state_dict", "{} problem(s):{}", problems.size(), message);
  }
  NoGradGuard no_grad;
  for (const auto& p : params) {
    const auto it = state.find(p.name);
    if (it != state.end()) p.tensor.copy_from(it->second);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& p : parameters_) {
    if (p.tensor.device() == device) continue;
    // Swap the storage under the same handle so that references held elsewhere follow.
    const Tensor moved = p.tensor.detach().to(device);
    TensorImpl& impl = p.tensor.impl();
    impl.storage = moved.storage();
    impl.strides = moved.strides();
    impl.offset = moved.offset();
    p.tensor.zero_grad();
  }
  for (auto& [_, child] : children_) child->to(device);
}

void Module::to(DType dtype) {
  for (auto& p : parameters_) {
    if (p.tensor.dtype() == dtype) continue;
    const Tensor converted = p.tensor.detach().to(dtype);
    TensorImpl& impl = p.tensor.impl();
    impl.storage = converted.storage();
    impl.strides = converted.strides();
    impl.offset = converted.offset();
    impl.dtype = dtype;
    p.tensor.zero_grad();
  }
  for (auto& [_, child] : children_) child->to(dtype);
}

void Module::zero_grad() {
  for (const auto& p : named_parameters()) p.tensor.zero_grad();
}

}  // namespace dssm::nn
