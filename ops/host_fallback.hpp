// Running a CPU kernel for tensors that live on the GPU: the ops whose CUDA kernels cover only
// part of the sizes (selective_scan beyond N = 16 states, causal_conv1d beyond width 8) take
// this path for the rest, on host copies, with a one-time notice printed by the op.
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

// A host copy of t (undefined stays undefined).
inline Tensor to_cpu(const Tensor& t) {
  return t.defined() ? t.to(Device::cpu()) : t;
}

// Runs `cpu_fn` on host copies of `outputs` (whose data it may read) and copies them back.
template <typename Fn>
void on_host(const std::vector<Tensor>& outputs, Fn&& cpu_fn) {
  std::vector<Tensor> host;
  for (const Tensor& t : outputs) host.push_back(to_cpu(t));
  cpu_fn(host);
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].defined()) outputs[i].copy_from(host[i]);
  }
}

}  // namespace dssm
