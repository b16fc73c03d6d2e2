// The trainer's CUDA entry points in a build without CUDA: never reached (no tensor can live on a
// CUDA device), they throw to make any mistake loud.
#include "cuda/kernels_train.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

void adamw_step(const std::vector<AdamWTensor>&, const Tensor&, const Tensor&, const AdamWHyper&) {
  absent("adamw_step");
}
double sum_of_squares(const std::vector<Tensor>&) {
  absent("sum_of_squares");
}

}  // namespace dssm::cuda
