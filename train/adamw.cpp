#include "train/adamw.hpp"

#include <fmt/format.h>

#include <cmath>

#include "autograd/grad_mode.hpp"
#include "cuda/kernels_train.hpp"
#include "tensor/error.hpp"

namespace dssm::train {
namespace {

// The update of one parameter tensor, element by element (see the header for the formulas).
template <typename T>
void adamw_cpu(T* p, const T* g, T* m, T* v, int64_t n, const cuda::AdamWHyper& h, bool decay) {
  const T scale = static_cast<T>(h.grad_scale);
  const T keep = decay ? static_cast<T>(1.0 - h.lr * h.weight_decay) : T(1);
  const T b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2);
  const T step_size = static_cast<T>(h.lr / h.bias_correction1);
  const T sqrt_bc2 = static_cast<T>(std::sqrt(h.bias_correction2));
  const T eps = static_cast<T>(h.eps);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i] * scale;
    m[i] = b1 * m[i] + (T(1) - b1) * grad;
    v[i] = b2 * v[i] + (T(1) - b2) * grad * grad;
    p[i] = p[i] * keep - step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
  }
}

}  // namespace

AdamW::AdamW(std::vector<nn::NamedParameter> parameters, AdamWConfig config)
    : parameters_(std::move(parameters)), config_(config) {
  DSSM_CHECK(!parameters_.empty(), "AdamW", "expected at least one parameter, got none");
  const Tensor& first = parameters_.front().tensor;
  const bool cuda = first.is_cuda();
  int64_t total = 0;
  for (const auto& p : parameters_) {
    DSSM_CHECK(p.tensor.device() == first.device() && p.tensor.dtype() == first.dtype(), "AdamW",
               "parameter '{}' is {}, expected the {} device and dtype of '{}'", p.name,
               describe(p.tensor), describe(first), parameters_.front().name);
    DSSM_CHECK(p.tensor.is_contiguous(), "AdamW", "parameter '{}' must be contiguous", p.name);
    offsets_.push_back(total);
    total += p.tensor.numel();
  }
  DSSM_CHECK(first.dtype() == DType::f32 || (!cuda && first.dtype() == DType::f64), "AdamW",
             "parameters must be f32 (f64 on the CPU), got {}", describe(first));
  exp_avg_ = Tensor::zeros({total}, first.dtype(), first.device());
  exp_avg_sq_ = Tensor::zeros({total}, first.dtype(), first.device());
}

void AdamW::step(double lr, double grad_scale) {
  NoGradGuard no_grad;
  ++steps_;
  if (parameters_.front().tensor.is_cuda()) {
    step_cuda(lr, grad_scale);
  } else {
    step_cpu(lr, grad_scale);
  }
}

namespace {

cuda::AdamWHyper hyper(const AdamWConfig& c, int64_t t, double lr, double grad_scale) {
  return {.lr = lr,
          .beta1 = c.beta1,
          .beta2 = c.beta2,
          .eps = c.eps,
          .weight_decay = c.weight_decay,
          .bias_correction1 = 1.0 - std::pow(c.beta1, static_cast<double>(t)),
          .bias_correction2 = 1.0 - std::pow(c.beta2, static_cast<double>(t)),
          .grad_scale = grad_scale};
}

void check_grad(const nn::NamedParameter& p, const Tensor& grad) {
  DSSM_CHECK(grad.shape() == p.tensor.shape() && grad.dtype() == p.tensor.dtype() &&
                 grad.device() == p.tensor.device(),
             "AdamW", "gradient of '{}' is {}, expected {}", p.name, describe(grad),
             describe(p.tensor));
}

}  // namespace

void AdamW::step_cpu(double lr, double grad_scale) {
  const cuda::AdamWHyper h = hyper(config_, steps_, lr, grad_scale);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const nn::NamedParameter& p = parameters_[i];
    const Tensor grad = p.tensor.grad();
    if (!grad.defined()) continue;
    check_grad(p, grad);
    const Tensor g = grad.contiguous();
    const int64_t n = p.tensor.numel();
    dispatch_floating(p.tensor.dtype(), "AdamW", [&]<typename T>() {
      if constexpr (std::is_same_v<T, bf16>) {
        fail("AdamW", "bf16 parameters are not supported (keep f32 master weights)");
      } else {
        adamw_cpu<T>(p.tensor.data<T>(), g.data<T>(), exp_avg_.data<T>() + offsets_[i],
                     exp_avg_sq_.data<T>() + offsets_[i], n, h, p.weight_decay);
      }
    });
  }
}

void AdamW::step_cuda(double lr, double grad_scale) {
  std::vector<cuda::AdamWTensor> tensors;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const nn::NamedParameter& p = parameters_[i];
    const Tensor grad = p.tensor.grad();
    if (!grad.defined()) continue;
    check_grad(p, grad);
    tensors.push_back({.param = p.tensor,
                       .grad = grad.contiguous(),
                       .state_offset = offsets_[i],
                       .weight_decay = p.weight_decay});
  }
  cuda::adamw_step(tensors, exp_avg_, exp_avg_sq_, hyper(config_, steps_, lr, grad_scale));
}

std::map<std::string, Tensor> AdamW::state() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const nn::NamedParameter& p = parameters_[i];
    const int64_t n = p.tensor.numel();
    out.emplace("exp_avg." + p.name, exp_avg_.narrow(0, offsets_[i], n).view(p.tensor.shape()));
    out.emplace("exp_avg_sq." + p.name,
                exp_avg_sq_.narrow(0, offsets_[i], n).view(p.tensor.shape()));
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, Tensor>& state, int64_t steps_taken) {
  std::vector<std::string> problems;
  const std::map<std::string, Tensor> mine = this->state();
  for (const auto& [name, slot] : mine) {
    const auto it = state.find(name);
    if (it == state.end()) {
      problems.push_back(fmt::format("missing '{}'", name));
    } else if (it->second.shape() != slot.shape()) {
      problems.push_back(fmt::format("'{}' has shape {}, expected {}", name,
                                     shape_str(it->second.shape()), shape_str(slot.shape())));
    }
  }
  for (const auto& [name, _] : state) {
    if (!mine.count(name)) problems.push_back(fmt::format("unexpected '{}'", name));
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& line : problems) message += "\n  " + line;
    fail("AdamW state", "{} problem(s):{}", problems.size(), message);
  }
  NoGradGuard no_grad;
  for (const auto& [name, slot] : mine) slot.copy_from(state.at(name));
  steps_ = steps_taken;
}

}  // namespace dssm::train
