// The retention and rotary CUDA entry points of a build without CUDA: never reached (no tensor
// can live on a CUDA device), they throw to make any mistake loud.
#include "cuda/kernels_retention.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

void retention_decay_mask(const Tensor&, const std::vector<double>&, bool) {
  absent("retention_decay_mask");
}
void retention_chunk_scan(const Tensor&, const Tensor&, const std::vector<double>&, bool) {
  absent("retention_chunk_scan");
}
void retention_chunk_mask(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t) {
  absent("retention_chunk_mask");
}
void retention_scale_rows(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) {
  absent("retention_scale_rows");
}
void retention_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const Tensor&, const std::vector<double>&, const std::vector<double>&) {
  absent("retention_step");
}
void rotary(const Tensor&, const Tensor&, int64_t, bool, double, double) {
  absent("rotary");
}

}  // namespace dssm::cuda
