#include "nn/embedding.hpp"

#include "nn/init.hpp"
#include "ops/embedding.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

Embedding::Embedding(int64_t vocab_size, int64_t dim, Generator& gen, double init_std) {
  DSSM_CHECK(vocab_size > 0 && dim > 0, "Embedding", "expected positive sizes, got vocab {} dim {}",
             vocab_size, dim);
  weight_ = register_parameter("weight", Tensor::empty({vocab_size, dim}), false);
  init::normal(weight_, init_std, gen);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return embedding(weight_, ids);
}

}  // namespace dssm::nn
