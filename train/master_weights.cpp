#include "train/master_weights.hpp"

#include "autograd/grad_mode.hpp"
#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

namespace dssm::train {

MasterWeights::MasterWeights(nn::Module& model, DType compute_dtype)
    : model_(model), params_(model.named_parameters()), compute_dtype_(compute_dtype) {
  DSSM_CHECK(!params_.empty(), "MasterWeights", "the model has no parameters");
  DSSM_CHECK(compute_dtype == DType::f32 || compute_dtype == DType::bf16 ||
                 compute_dtype == params_.front().tensor.dtype(),
             "MasterWeights", "compute dtype must be f32 or bf16, got {}",
             dtype_name(compute_dtype));
  separate_ = compute_dtype != params_.front().tensor.dtype();
  if (!separate_) {
    masters_ = params_;
    return;
  }
  NoGradGuard no_grad;
  for (const auto& p : params_) {
    DSSM_CHECK(p.tensor.dtype() == DType::f32, "MasterWeights",
               "parameter '{}' is {}; mixed precision starts from f32 parameters", p.name,
               describe(p.tensor));
    Tensor master = p.tensor.detach().clone();
    master.set_requires_grad(true);
    masters_.push_back({p.name, master, p.weight_decay});
  }
  model_.to(compute_dtype);
}

std::vector<Tensor> MasterWeights::tensors() const {
  std::vector<Tensor> out;
  for (const auto& m : masters_) out.push_back(m.tensor);
  return out;
}

void MasterWeights::accumulate_gradients() {
  if (!separate_) return;
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor grad = params_[i].tensor.grad();
    if (!grad.defined()) continue;
    const Tensor& master = masters_[i].tensor;
    const Tensor g = grad.to(DType::f32);
    master.set_grad(master.grad().defined() ? master.grad() + g : g);
    params_[i].tensor.zero_grad();
  }
}

void MasterWeights::copy_to_model() {
  if (!separate_) return;
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].tensor.copy_from(masters_[i].tensor);
}

void MasterWeights::zero_grad() {
  for (const auto& p : params_) p.tensor.zero_grad();
  for (const auto& m : masters_) m.tensor.zero_grad();
}

void MasterWeights::with_f32_model(const std::function<void()>& fn) {
  if (!separate_) return fn();
  model_.to(DType::f32);
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].tensor.copy_from(masters_[i].tensor);
  }
  // Back to the compute dtype even if fn throws (a failed checkpoint must not end the run's
  // mixed precision).
  struct Restore {
    nn::Module& model;
    DType dtype;
    ~Restore() { model.to(dtype); }
  } restore{model_, compute_dtype_};
  fn();
}

}  // namespace dssm::train
