// The recurrent state of retention after a whole sequence, from its parallel inputs (RetNet
// Eq. 6 unrolled over the sequence): S_T = gamma^T S_0 + (Γ K)^T V with Γ = diag(gamma^(T-1-m)),
// the state a generator continues from after a prompt run through the parallel or chunkwise form.
// Composed of differentiable ops (the decays are constants), so autograd gives the backward:
//   dK = Γ V dS^T,  dV = (Γ K) dS,  dS_0 = gamma^T dS.
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/retention_common.hpp"

namespace dssm {

Tensor retention_final_state(const Tensor& k, const Tensor& v, const Tensor& initial_state,
                             const RetentionOptions& options) {
  constexpr const char* kOp = "retention_final_state";
  check_retention_inputs(k, k, v, kOp);
  const int64_t B = k.size(0), H = k.size(1), T = k.size(2), dk = k.size(3), dv = v.size(3);
  const Shape state_shape = {B, H, dk, dv};
  DSSM_CHECK(!initial_state.defined() ||
                 (initial_state.shape() == state_shape && initial_state.dtype() == k.dtype() &&
                  initial_state.device() == k.device()),
             kOp, "expected initial_state of shape {} ({} on {}, as k) or none, got {}",
             shape_str(state_shape), dtype_name(k.dtype()), k.device().str(),
             initial_state.defined() ? describe(initial_state) : "none");
  const RetentionDecay decay = retention_decay(options, H, kOp);
  // Γ [H, T, 1]: key m decays by gamma^(T-1-m) until the last token.
  const Tensor key_decay =
      per_head_table(
          H, T,
          [&](int64_t h, int64_t m) { return decay.power(h, static_cast<double>(T - 1 - m)); },
          k.dtype(), k.device())
          .unsqueeze(-1);
  const Tensor state = matmul((k * key_decay).transpose(-1, -2), v);
  if (!initial_state.defined()) return state;
  const Tensor state_decay =
      per_head_table(
          H, 1, [&](int64_t h, int64_t) { return decay.power(h, static_cast<double>(T)); },
          k.dtype(), k.device())
          .view({1, H, 1, 1});
  return initial_state * state_decay + state;
}

namespace {

// batch 2, heads 2, length 5, dk 3, dv 4, from a random initial state.
const OpRegistration kRetentionFinalState{
    {.name = "retention_final_state",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 2, 5, 3}),
                                      random_normal(g, {2, 2, 5, 4}),
                                      random_normal(g, {2, 2, 3, 4})};
         },
     .run =
         [](const std::vector<Tensor>& in) { return retention_final_state(in[0], in[1], in[2]); }}};

}  // namespace
}  // namespace dssm
