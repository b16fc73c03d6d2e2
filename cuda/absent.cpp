// The CUDA entry points of a build without CUDA (DSSM_CUDA=OFF, or the sanitizer build).
// Tensors can never be placed on a CUDA device in such a build, so only the queries are reached;
// the rest throw to make any mistake loud.
#include "cuda/backend.hpp"
#include "cuda/kernels.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

bool available() {
  return false;
}
int device_count() {
  return 0;
}
void require_device(int) {
  absent("cuda device");
}
void synchronize() {}
void copy_bytes(void*, Device, const void*, Device, size_t) {
  absent("copy_bytes");
}
void copy_strided(const Tensor&, const Tensor&) {
  absent("copy");
}
void fill(const Tensor&, double) {
  absent("fill");
}
void fill_random(const Tensor&, uint64_t, uint64_t, bool) {
  absent("rand");
}

void unary(UnaryOp, const Tensor&, const Tensor&, double) {
  absent("unary");
}
void unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&, double) {
  absent("unary backward");
}
void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  absent("binary");
}
void reduce_rows(ReduceOp, const Tensor&, const Tensor&, const Tensor&) {
  absent("reduce");
}
void scatter_rows(const Tensor&, const Tensor&, const Tensor&) {
  absent("scatter_rows");
}
void matmul(const Tensor&, const Tensor&, const Tensor&, bool) {
  absent("matmul");
}

}  // namespace dssm::cuda
