// SwiGLU feed-forward (Shazeer 2020, "GLU Variants Improve Transformer"), as in LLaMA and
// torchscale's RetNet FFN:  y = W_down (silu(W_gate x) ⊙ W_up x),  all bias-free.
#pragma once

#include <memory>

#include "nn/linear.hpp"
#include "nn/module.hpp"

namespace dssm::nn {

class SwiGLU : public Module {
 public:
  SwiGLU(int64_t dim, int64_t hidden, Generator& gen, double init_std = 0.02);

  Tensor forward(const Tensor& x) const;  // [..., dim] -> [..., dim]

  Linear& gate_proj() { return *gate_proj_; }
  Linear& up_proj() { return *up_proj_; }
  Linear& down_proj() { return *down_proj_; }

 private:
  std::shared_ptr<Linear> gate_proj_;
  std::shared_ptr<Linear> up_proj_;
  std::shared_ptr<Linear> down_proj_;
};

}  // namespace dssm::nn
