// AdamW (Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019), as
// torch.optim.AdamW computes it. For each parameter p with gradient g, at step t = 1, 2, ...:
//   g  = g * grad_scale                       (the clipping coefficient, folded in: train/clip.hpp)
//   p  = p * (1 - lr * weight_decay)          (decoupled decay; only where the parameter decays)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p  = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Which parameters decay is decided by the modules that own them (nn::NamedParameter::
// weight_decay): not the norms' weights, biases, embeddings, nor Mamba's A_log and D (see
// docs/training.md). Parameters without a gradient are left alone, as in PyTorch.
//
// The moments m and v live in two flat buffers (one element per parameter element, the
// parameters' dtype and device). On the GPU one fused kernel updates every parameter.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "tensor/tensor.hpp"

namespace dssm::train {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW {
 public:
  // The parameters must share one device and one dtype: f32 (f64 on the CPU, for tests).
  AdamW(std::vector<nn::NamedParameter> parameters, AdamWConfig config);

  void step(double lr, double grad_scale = 1.0);
  int64_t steps_taken() const { return steps_; }

  // "exp_avg.<name>" and "exp_avg_sq.<name>" for every parameter (views of the flat buffers).
  std::map<std::string, Tensor> state() const;
  // Restores what state() returned and the number of steps taken; every tensor must be there
  // with its parameter's shape (the error lists all that are missing or mis-shaped).
  void load_state(const std::map<std::string, Tensor>& state, int64_t steps_taken);

 private:
  void step_cpu(double lr, double grad_scale);
  void step_cuda(double lr, double grad_scale);

  std::vector<nn::NamedParameter> parameters_;
  std::vector<int64_t> offsets_;  // where each parameter's moments start in the flat buffers
  Tensor exp_avg_;                // m, flat
  Tensor exp_avg_sq_;             // v, flat
  AdamWConfig config_;
  int64_t steps_ = 0;
};

}  // namespace dssm::train
