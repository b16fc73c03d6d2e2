// The fused attention entry points of a build without CUDA: never reached (no tensor can live on a
// CUDA device), they throw to make any mistake loud.
#include "cuda/kernels_attention.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

std::string flash_attention_refusal(const Tensor&, const Tensor&, const Tensor&, bool) {
  absent("flash_attention_refusal");
}
void flash_attention_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, double) {
  absent("flash_attention_forward");
}
void flash_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, double) {
  absent("flash_attention_backward");
}

}  // namespace dssm::cuda
