// The CUDA kernels of the trainer (train/), implemented in cuda/adamw.cu. As in cuda/kernels.hpp:
// tensors already on one CUDA device, launched on the current stream.
// A build without CUDA gets the throwing versions in cuda/absent_train.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.hpp"

namespace dssm::cuda {

// The hyper-parameters of one AdamW step (train/adamw.hpp has the formulas).
struct AdamWHyper {
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
  double bias_correction1;  // 1 - beta1^t
  double bias_correction2;  // 1 - beta2^t
  double grad_scale;        // gradients are multiplied by this first (clipping)
};

// One parameter of the step: param and grad contiguous f32 of one shape; its moments are the
// elements [state_offset, state_offset + numel) of the flat buffers.
struct AdamWTensor {
  Tensor param;
  Tensor grad;
  int64_t state_offset;
  bool weight_decay;
};

// Updates every parameter in one launch: each block takes one chunk of one tensor.
void adamw_step(const std::vector<AdamWTensor>& tensors, const Tensor& exp_avg,
                const Tensor& exp_avg_sq, const AdamWHyper& hyper);

// sum over all tensors of sum x^2 (contiguous f32): f32 partial sums per chunk, added in f64 on
// the host in a fixed order (the same result on every run).
double sum_of_squares(const std::vector<Tensor>& tensors);

}  // namespace dssm::cuda
