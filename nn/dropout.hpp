// Dropout (Srivastava et al. 2014), inverted: kept values are scaled by 1 / (1 - p). Masks come
// from a Generator that the model owns (LanguageModel::dropout_generator), so a run is
// reproducible from its seed. Identity in eval mode.
#pragma once

#include "nn/module.hpp"
#include "tensor/random.hpp"

namespace dssm::nn {

class Dropout : public Module {
 public:
  // `gen` must outlive the module (it is the owning model's generator).
  Dropout(double p, Generator& gen);

  Tensor forward(const Tensor& x) const;

  double p() const { return p_; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace dssm::nn
