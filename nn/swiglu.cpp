#include "nn/swiglu.hpp"

#include "ops/elementwise.hpp"

namespace dssm::nn {

SwiGLU::SwiGLU(int64_t dim, int64_t hidden, Generator& gen, double init_std)
    : gate_proj_(register_module("gate_proj",
                                 std::make_shared<Linear>(dim, hidden, false, gen, init_std))),
      up_proj_(
          register_module("up_proj", std::make_shared<Linear>(dim, hidden, false, gen, init_std))),
      down_proj_(register_module("down_proj",
                                 std::make_shared<Linear>(hidden, dim, false, gen, init_std))) {}

Tensor SwiGLU::forward(const Tensor& x) const {
  return down_proj_->forward(silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

}  // namespace dssm::nn
