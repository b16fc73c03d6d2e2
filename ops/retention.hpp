// Multi-scale retention (RetNet, Sun et al. 2023, Eq. 5-8; DenseRetNet, arXiv 2403.00818,
// Eq. 20-23), in its three equivalent forms. Per batch b and head h with decay gamma_h:
//
//   parallel   o_n = r_n * sum_{m <= n} gamma^(n-m) (q_n . k_m) v_m
//                  = r ⊙ ((q k^T ⊙ D) v),   D[n, m] = gamma^(n-m) for n >= m, else 0
//   chunkwise  the same sum split into chunks of `chunk_size` tokens: within a chunk the
//              parallel form, across chunks a state S of dk x dv carried forward (RetNet Eq. 7)
//   recurrent  S_n = gamma S_{n-1} + k_n^T v_n,   o_n = r_n * q_n S_n   (one token at a time)
//
// Shapes: q, k [batch, heads, length, dk], v [batch, heads, length, dv] -> o [batch, heads,
// length, dv]; the recurrent step takes one token: q_t, k_t [batch, heads, dk], v_t [batch,
// heads, dv], state [batch, heads, dk, dv].
//
// Normalisation. r_n = 1 (normalize = false) or r_n = 1 / sqrt(sum_{m <= n} gamma^(n-m)) =
// 1 / sqrt((1 - gamma^(n+1)) / (1 - gamma)) (normalize = true, the default): the decay-mask row
// normalisation of the reference code, which depends only on n, so all three forms carry it
// exactly. The reference's second normaliser (each row of |q k^T ⊙ D| summed and clamped to
// [1, 5e4]) is not implemented: it does not decompose over a prefix, so no recurrent form can
// reproduce it, and the per-head RMS norm that follows retention in the model cancels any per-row
// positive scalar anyway. See docs/ops-retention.md.
//
// The decays gamma_h are constants (no gradient): a tensor of `heads` values in (0, 1] on any
// device, or undefined for the standard rule gamma_h = 1 - 2^(-5-h).
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

struct RetentionOptions {
  Tensor gammas;          // [heads]; undefined: retention_default_gammas(heads)
  bool normalize = true;  // scale output row n by r_n (see above)
};

// gamma_h = 1 - 2^(-5-h) for h = 0 .. heads-1 (RetNet's multi-scale decay).
std::vector<double> retention_default_gammas(int64_t heads);

// o = r ⊙ ((q k^T ⊙ D) v), composed of matmul and an elementwise decay mask; autograd gives the
// backward. Memory grows as length^2: for short sequences and as the reference form.
Tensor retention_parallel(const Tensor& q, const Tensor& k, const Tensor& v,
                          const RetentionOptions& options = {});

// The chunkwise form, any chunk_size >= 1 (it need not divide the length). One op with an
// explicit backward written with batched GEMMs; it saves only q, k, v and recomputes the chunk
// states in backward.
Tensor retention_chunkwise(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_size,
                           const RetentionOptions& options = {});

// The recurrent state after a whole sequence of `length` tokens that follows `initial_state`
// (RetNet Eq. 6 unrolled; the chunkwise form's U_j with one chunk):
//   S_T = gamma^T S_0 + sum_{m < T} gamma^(T-1-m) k_m^T v_m = gamma^T S_0 + (Γ K)^T V,
// Γ = diag(gamma^(T-1-m)). k [batch, heads, length, dk], v [batch, heads, length, dv];
// initial_state [batch, heads, dk, dv], or undefined for S_0 = 0 (a sequence from position 0).
// Returns [batch, heads, dk, dv]: the state retention_step would hold after the last token.
// Composed of matmul and elementwise products with constant decays, so autograd gives the
// backward.
Tensor retention_final_state(const Tensor& k, const Tensor& v, const Tensor& initial_state = {},
                             const RetentionOptions& options = {});

struct RetentionStepResult {
  Tensor out;    // [batch, heads, dv]
  Tensor state;  // [batch, heads, dk, dv], S_n
};
// One recurrent step for the token at `position` (0-based; it sets r_n): S_n = gamma S_{n-1} +
// k_n^T v_n, o_n = r_n q_n S_n. Start from a zero state at position 0. Differentiable in all four
// tensor inputs.
RetentionStepResult retention_step(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                                   const Tensor& state, int64_t position,
                                   const RetentionOptions& options = {});

}  // namespace dssm
