// Embedding: a table of vocab_size rows of width dim; token id i looks up row i.
#pragma once

#include "nn/module.hpp"

namespace dssm::nn {

class Embedding : public Module {
 public:
  // Rows ~ N(0, init_std^2); no weight decay on the table.
  Embedding(int64_t vocab_size, int64_t dim, Generator& gen, double init_std = 0.02);

  // ids [...] (i32/i64, each in [0, vocab_size)) -> [..., dim].
  Tensor forward(const Tensor& ids) const;

  const Tensor& weight() const { return weight_; }
  int64_t vocab_size() const { return weight_.size(0); }
  int64_t dim() const { return weight_.size(1); }

 private:
  Tensor weight_;
};

}  // namespace dssm::nn
