// The parallel form of retention (RetNet Eq. 5; DenseRetNet Eq. 20-21):
//   o = (q k^T ⊙ D) v,   D[h, n, m] = r_n gamma_h^(n-m) for n >= m, else 0,
// with r_n the optional row normalisation (ops/retention.hpp). Composed of matmul and an
// elementwise product with the constant mask D, so autograd supplies the backward:
//   dA = (dO v^T) ⊙ D,  dq = dA k,  dk = dA^T q,  dv = (q k^T ⊙ D)^T dO.
// The reference form: it materialises [batch, heads, length, length] scores.
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/retention_common.hpp"

namespace dssm {

Tensor retention_parallel(const Tensor& q, const Tensor& k, const Tensor& v,
                          const RetentionOptions& options) {
  check_retention_inputs(q, k, v, "retention_parallel");
  const RetentionDecay decay = retention_decay(options, q.size(1), "retention_parallel");
  if (q.numel() == 0 || v.numel() == 0) {
    return Tensor::zeros({q.size(0), q.size(1), q.size(2), v.size(3)}, v.dtype(), v.device());
  }
  const Tensor mask =
      retention_decay_mask(decay, q.size(2), options.normalize, q.dtype(), q.device());
  const Tensor scores = matmul(q, k.transpose(-1, -2)) * mask;  // [B, H, L, L] ⊙ [H, L, L]
  return matmul(scores, v);
}

namespace {

// batch 2, heads 2, length 7, dk 4, dv 6.
std::vector<Tensor> retention_inputs(Generator& g) {
  return {random_normal(g, {2, 2, 7, 4}), random_normal(g, {2, 2, 7, 4}),
          random_normal(g, {2, 2, 7, 6})};
}

const OpRegistration kRetentionParallel{
    {.name = "retention_parallel",
     .make_inputs = retention_inputs,
     .run = [](const std::vector<Tensor>& in) { return retention_parallel(in[0], in[1], in[2]); }}};

}  // namespace
}  // namespace dssm
