// What the three forms of retention share: input checks, the per-head decays and the constants
// derived from them (ops/retention_parallel.cpp, ops/retention_chunkwise.cpp,
// ops/retention_step.cpp). Powers are computed as gamma^p = exp(p log gamma) in float64, never as a
// ratio of two powers, so they stay exact where gamma^m underflows.
#pragma once

#include <functional>
#include <vector>

#include "ops/retention.hpp"

namespace dssm {

struct RetentionDecay {
  std::vector<double> gammas;  // one per head, each in (0, 1]

  int64_t heads() const { return static_cast<int64_t>(gammas.size()); }
  double power(int64_t head, double exponent) const;  // gamma_h^exponent
  // r_n = 1 / sqrt(sum_{m <= n} gamma^(n-m)) = 1 / sqrt((1 - gamma^(n+1)) / (1 - gamma)).
  double row_scale(int64_t head, int64_t position) const;
};

// Checks q, k [batch, heads, length, dk] and v [batch, heads, length, dv]: same batch, heads and
// length, same dk for q and k, one floating dtype, one device. Errors name `op`.
void check_retention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const char* op);

// The validated decays of `options` for `heads` heads (the standard rule when none are given).
RetentionDecay retention_decay(const RetentionOptions& options, int64_t heads, const char* op);

// D [heads, length, length]: D[h, n, m] = gamma_h^(n-m) for n >= m, else 0; each row n also
// scaled by r_n when `normalize`. Not differentiable (the decays are constants).
Tensor retention_decay_mask(const RetentionDecay& decay, int64_t length, bool normalize,
                            DType dtype, Device device);

// A [heads, count] tensor with entry (h, i) = value(h, i), for small per-head tables.
Tensor per_head_table(int64_t heads, int64_t count,
                      const std::function<double(int64_t, int64_t)>& value, DType dtype,
                      Device device);

}  // namespace dssm
