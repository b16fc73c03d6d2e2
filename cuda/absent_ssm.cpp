// The state-space kernels of a build without CUDA: unreachable (no tensor can live on a CUDA
// device there), and loud if reached.
#include "cuda/kernels_ssm.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  fail(what, "densessm was built without the CUDA backend (configure with -DDSSM_CUDA=ON)");
}
}  // namespace

Tensor selective_scan_chunk_entry(const ScanInputs&) {
  absent("selective_scan");
}
void selective_scan_forward(const std::vector<ScanForwardJob>&) {
  absent("selective_scan");
}
void selective_scan_backward(const std::vector<ScanBackwardJob>&) {
  absent("selective_scan backward");
}
void selective_scan_readout_dC(const std::vector<ReadoutGradJob>&) {
  absent("dense_readout_pass backward");
}
void selective_scan_step(const ScanInputs&, const Tensor&, const Tensor&) {
  absent("selective_scan_step");
}
void causal_conv1d_forward(const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&) {
  absent("causal_conv1d");
}
void causal_conv1d_backward(const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&) {
  absent("causal_conv1d backward");
}
void causal_conv1d_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
                        const Tensor&) {
  absent("causal_conv1d_step");
}

void dense_mamba_output_forward(const DenseOutputInputs&, const Tensor&) {
  absent("dense_mamba_output");
}
void dense_mamba_output_backward(const DenseOutputInputs&, const Tensor&, const DenseOutputGrads&) {
  absent("dense_mamba_output backward");
}

}  // namespace dssm::cuda
