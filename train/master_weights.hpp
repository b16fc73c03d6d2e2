// Mixed precision with f32 master weights (Micikevicius et al., "Mixed precision training",
// ICLR 2018). With compute dtype bf16 the model's parameters are converted to bf16, so forward
// and backward run in bf16: GEMM inputs and activations are bf16, while the ops accumulate
// their reductions (norms, softmax, cross-entropy, scans) in f32. This class keeps the f32
// copy of every parameter that the optimizer updates:
//
//   after each micro-batch's backward:   master.grad += f32(param.grad); param.grad dropped
//   after each optimizer step:           param = bf16(master)
//
// so gradients accumulate over micro-batches in f32, and the update itself (tiny steps on
// large weights) is not lost to bf16 rounding. With compute dtype equal to the parameters'
// dtype (f32) the masters are the model's own parameters and both calls do nothing.
#pragma once

#include <functional>
#include <vector>

#include "nn/module.hpp"

namespace dssm::train {

class MasterWeights {
 public:
  // Converts `model` (kept by reference) to `compute_dtype`, after taking the f32 copies.
  MasterWeights(nn::Module& model, DType compute_dtype);

  // What the optimizer updates: the f32 masters under the model's names and decay flags.
  const std::vector<nn::NamedParameter>& parameters() const { return masters_; }
  std::vector<Tensor> tensors() const;
  bool separate() const { return separate_; }  // false in f32: masters are the parameters

  void accumulate_gradients();
  void copy_to_model();
  void zero_grad();  // the masters' and the model's gradients

  // Runs `fn` with the model's parameters holding the f32 master values, in f32 (to save a
  // checkpoint in full precision), then returns them to the compute dtype.
  void with_f32_model(const std::function<void()>& fn);

 private:
  nn::Module& model_;
  std::vector<nn::NamedParameter> params_;   // the model's
  std::vector<nn::NamedParameter> masters_;  // the f32 copies (or the same tensors)
  DType compute_dtype_;
  bool separate_;
};

}  // namespace dssm::train
