// The network ops' CUDA entry points in a build without CUDA: they are never reached (no tensor
// can live on a CUDA device), and throw to make any mistake loud.
#include "cuda/kernels_nn.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

void softmax_forward(const Tensor&, const Tensor&, bool) {
  absent("softmax");
}
void softmax_backward(const Tensor&, const Tensor&, const Tensor&, bool) {
  absent("softmax backward");
}
void cross_entropy_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) {
  absent("cross_entropy");
}
void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, double, int64_t) {
  absent("cross_entropy backward");
}
void embedding_forward(const Tensor&, const Tensor&, const Tensor&) {
  absent("embedding");
}
void embedding_backward(const Tensor&, const Tensor&, const Tensor&) {
  absent("embedding backward");
}
void norm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                  const Tensor&, int64_t, double) {
  absent("norm");
}
void norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                   const Tensor&, const Tensor&, const Tensor&, int64_t) {
  absent("norm backward");
}
void index_select(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t) {
  absent("index_select");
}
void index_add(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t) {
  absent("index_select backward");
}
void where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  absent("where");
}
IndexScan scan_indices(const Tensor&, int64_t, bool, int64_t) {
  absent("scan_indices");
}
void dropout(const Tensor&, const Tensor&, double, uint64_t, uint64_t) {
  absent("dropout");
}

}  // namespace dssm::cuda
