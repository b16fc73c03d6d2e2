// The recurrent form of retention, one token at a time (RetNet Eq. 6; DenseRetNet Eq. 22):
//   S_n = gamma S_{n-1} + k_n^T v_n,   o_n = r_n q_n S_n,
// per batch and head, with S a dk x dv state. Backward, from dO and the incoming dS_n:
//   dS_n' = dS_n + r_n q_n^T dO          (the state's total gradient)
//   dq = r_n dO S_n^T,  dk = dS_n' v^T,  dv = k dS_n',  dS_{n-1} = gamma dS_n'
#include "autograd/graph.hpp"
#include "cuda/kernels_retention.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "ops/retention_common.hpp"

namespace dssm {
namespace {

constexpr const char* kOp = "retention_step";

void check_step_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& state,
                       int64_t position) {
  DSSM_CHECK(
      q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && state.dim() == 4, kOp,
      "expected q_t, k_t [batch, heads, dk], v_t [batch, heads, dv], state [batch, heads, dk, "
      "dv], got q_t {}, k_t {}, v_t {}, state {}",
      describe(q), describe(k), describe(v), describe(state));
  const Shape expected_state = {q.size(0), q.size(1), q.size(2), v.size(2)};
  DSSM_CHECK(k.shape() == q.shape(), kOp, "expected k_t of shape {} (as q_t), got {}",
             shape_str(q.shape()), describe(k));
  DSSM_CHECK(v.size(0) == q.size(0) && v.size(1) == q.size(1), kOp,
             "expected v_t of shape [{}, {}, dv], got {}", q.size(0), q.size(1), describe(v));
  DSSM_CHECK(state.shape() == expected_state, kOp, "expected state of shape {}, got {}",
             shape_str(expected_state), describe(state));
  for (const Tensor* t : {&k, &v, &state}) {
    DSSM_CHECK(t->dtype() == q.dtype() && t->device() == q.device() && is_floating(q.dtype()), kOp,
               "expected one floating dtype and one device, got q_t {} and {}", describe(q),
               describe(*t));
  }
  DSSM_CHECK(position >= 0, kOp, "expected position >= 0, got {}", position);
}

void cpu_step(const Tensor& out, const Tensor& new_state, const Tensor& q, const Tensor& k,
              const Tensor& v, const Tensor& state, const std::vector<double>& gammas,
              const std::vector<double>& scales) {
  const int64_t B = q.size(0), H = q.size(1), dk = q.size(2), dv = v.size(2);
  dispatch_floating(q.dtype(), kOp, [&]<typename T>() {
    using Acc = compute_t<T>;
    const T *pq = q.data<T>(), *pk = k.data<T>(), *pv = v.data<T>(), *ps = state.data<T>();
    T *po = out.data<T>(), *pn = new_state.data<T>();
#pragma omp parallel for collapse(2) if (B * H * dk * dv > 65536)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t bh = b * H + h;
        const Acc gamma = static_cast<Acc>(gammas[h]);
        std::vector<Acc> acc(static_cast<size_t>(dv), Acc(0));
        for (int64_t d = 0; d < dk; ++d) {
          const Acc kd = static_cast<Acc>(pk[bh * dk + d]), qd = static_cast<Acc>(pq[bh * dk + d]);
          const T* s_row = ps + (bh * dk + d) * dv;
          T* n_row = pn + (bh * dk + d) * dv;
          for (int64_t e = 0; e < dv; ++e) {
            const Acc s =
                gamma * static_cast<Acc>(s_row[e]) + kd * static_cast<Acc>(pv[bh * dv + e]);
            n_row[e] = static_cast<T>(s);
            acc[e] += qd * s;
          }
        }
        for (int64_t e = 0; e < dv; ++e) {
          po[bh * dv + e] = static_cast<T>(static_cast<Acc>(scales[h]) * acc[e]);
        }
      }
    }
  });
}

}  // namespace

RetentionStepResult retention_step(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                                   const Tensor& state, int64_t position,
                                   const RetentionOptions& options) {
  check_step_inputs(q_t, k_t, v_t, state, position);
  const int64_t heads = q_t.size(1);
  const RetentionDecay decay = retention_decay(options, heads, kOp);
  std::vector<double> scales(static_cast<size_t>(heads), 1.0);
  if (options.normalize) {
    for (int64_t h = 0; h < heads; ++h) scales[h] = decay.row_scale(h, position);
  }
  const Tensor q = q_t.contiguous(), k = k_t.contiguous(), v = v_t.contiguous();
  const Tensor s = state.contiguous();
  RetentionStepResult r{Tensor::empty(v.shape(), v.dtype(), v.device()),
                        Tensor::empty(s.shape(), s.dtype(), s.device())};
  if (r.state.numel() > 0 || r.out.numel() > 0) {
    if (q.is_cuda()) {
      cuda::retention_step(r.out, r.state, q, k, v, s, decay.gammas, scales);
    } else {
      cpu_step(r.out, r.state, q, k, v, s, decay.gammas, scales);
    }
  }
  if (!any_requires_grad({q_t, k_t, v_t, state})) return r;  // generation: nothing to record
  const Tensor gamma = Tensor::from_vector(decay.gammas, {1, heads, 1, 1}, q.dtype(), q.device());
  const Tensor scale = Tensor::from_vector(scales, {1, heads, 1}, q.dtype(), q.device());
  record(kOp, {q_t, k_t, v_t, state}, {r.out, r.state},
         [q = q.detach(), k = k.detach(), v = v.detach(), new_state = r.state.detach(), gamma,
          scale](const BackwardArgs& args) {
           const Tensor g_out = args.grad(0) * scale;  // r_n dO, [B, H, dv]
           const Tensor g_state = args.grad(1) + q.unsqueeze(-1) * g_out.unsqueeze(-2);
           std::vector<Tensor> grads(4);
           if (args.needs(0)) grads[0] = matmul(new_state, g_out.unsqueeze(-1)).squeeze(-1);
           if (args.needs(1)) grads[1] = matmul(g_state, v.unsqueeze(-1)).squeeze(-1);
           if (args.needs(2)) grads[2] = matmul(k.unsqueeze(-2), g_state).squeeze(-2);
           if (args.needs(3)) grads[3] = g_state * gamma;
           return grads;
         });
  return r;
}

namespace {

// Two steps (positions 2 and 3) from a random state, so the gradient flows through both the
// output and the state of the first: batch 2, heads 2, dk 4, dv 6.
const OpRegistration kRetentionStep{{.name = "retention_step",
                                     .make_inputs =
                                         [](Generator& g) {
                                           std::vector<Tensor> in;
                                           for (int t = 0; t < 2; ++t) {
                                             in.push_back(random_normal(g, {2, 2, 4}));
                                             in.push_back(random_normal(g, {2, 2, 4}));
                                             in.push_back(random_normal(g, {2, 2, 6}));
                                           }
                                           in.push_back(random_normal(g, {2, 2, 4, 6}));
                                           return in;
                                         },
                                     .run =
                                         [](const std::vector<Tensor>& in) {
                                           const RetentionStepResult first =
                                               retention_step(in[0], in[1], in[2], in[6], 2);
                                           const RetentionStepResult second =
                                               retention_step(in[3], in[4], in[5], first.state, 3);
                                           return first.out * second.out + sum(second.state, {2});
                                         }}};

}  // namespace
}  // namespace dssm
