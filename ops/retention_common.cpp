// Input checks of retention, and its decays: gamma_h = 1 - 2^(-5-h) by default (RetNet Sec. 2.2),
// the decay mask D of the parallel form, and the row normalisation r_n (see ops/retention.hpp).
#include "ops/retention_common.hpp"

#include <cmath>

#include "cuda/kernels_retention.hpp"

namespace dssm {

std::vector<double> retention_default_gammas(int64_t heads) {
  DSSM_CHECK(heads >= 1, "retention_default_gammas", "expected heads >= 1, got {}", heads);
  std::vector<double> gammas(static_cast<size_t>(heads));
  for (int64_t h = 0; h < heads; ++h) gammas[h] = 1.0 - std::exp2(-5.0 - static_cast<double>(h));
  return gammas;
}

double RetentionDecay::power(int64_t head, double exponent) const {
  return std::exp(exponent * std::log(gammas[head]));
}

double RetentionDecay::row_scale(int64_t head, int64_t position) const {
  const double gamma = gammas[head];
  const double n_plus_1 = static_cast<double>(position + 1);
  const double row_sum =
      gamma == 1.0 ? n_plus_1 : -std::expm1(n_plus_1 * std::log(gamma)) / (1.0 - gamma);
  return 1.0 / std::sqrt(row_sum);
}

void check_retention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  DSSM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
             "expected q, k [batch, heads, length, dk] and v [batch, heads, length, dv], got q {}, "
             "k {}, v {}",
             describe(q), describe(k), describe(v));
  constexpr const char* dim_names[] = {"batch", "heads", "length", "dk"};
  for (int d = 0; d < 4; ++d) {
    DSSM_CHECK(k.size(d) == q.size(d), op, "q and k differ in {}: expected k of shape {}, got {}",
               dim_names[d], shape_str(q.shape()), describe(k));
    DSSM_CHECK(d == 3 || v.size(d) == q.size(d), op,
               "q and v differ in {}: expected v of shape [{}, {}, {}, dv], got {}", dim_names[d],
               q.size(0), q.size(1), q.size(2), describe(v));
  }
  DSSM_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(), op,
             "expected q, k, v of one floating dtype, got q {}, k {}, v {}", describe(q),
             describe(k), describe(v));
  DSSM_CHECK(k.device() == q.device() && v.device() == q.device(), op,
             "expected q, k, v on one device, got q {}, k {}, v {}", describe(q), describe(k),
             describe(v));
}

RetentionDecay retention_decay(const RetentionOptions& options, int64_t heads, const char* op) {
  if (!options.gammas.defined()) return {retention_default_gammas(heads)};
  DSSM_CHECK(options.gammas.dim() == 1 && options.gammas.size(0) == heads, op,
             "expected gammas of shape [{}] (one per head), got {}", heads,
             describe(options.gammas));
  DSSM_CHECK(is_floating(options.gammas.dtype()), op, "expected floating gammas, got {}",
             describe(options.gammas));
  RetentionDecay decay{options.gammas.to_vector<double>()};
  for (int64_t h = 0; h < heads; ++h) {
    DSSM_CHECK(decay.gammas[h] > 0.0 && decay.gammas[h] <= 1.0, op,
               "expected every gamma in (0, 1], got gamma[{}] = {}", h, decay.gammas[h]);
  }
  return decay;
}

Tensor retention_decay_mask(const RetentionDecay& decay, int64_t length, bool normalize,
                            DType dtype, Device device) {
  const int64_t heads = decay.heads();
  Tensor mask = Tensor::empty({heads, length, length}, dtype, device);
  if (mask.numel() == 0) return mask;
  if (device.is_cuda()) {
    cuda::retention_decay_mask(mask, decay.gammas, normalize);
    return mask;
  }
  dispatch_floating(dtype, "retention_decay_mask", [&]<typename T>() {
    T* out = mask.data<T>();
#pragma omp parallel for collapse(2) if (heads * length * length > 65536)
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t n = 0; n < length; ++n) {
        const double log_gamma = std::log(decay.gammas[h]);
        const double scale = normalize ? decay.row_scale(h, n) : 1.0;
        T* row = out + (h * length + n) * length;
        for (int64_t m = 0; m < length; ++m) {
          row[m] = static_cast<T>(m <= n ? scale * std::exp(static_cast<double>(n - m) * log_gamma)
                                         : 0.0);
        }
      }
    }
  });
  return mask;
}

Tensor per_head_table(int64_t heads, int64_t count,
                      const std::function<double(int64_t, int64_t)>& value, DType dtype,
                      Device device) {
  std::vector<double> values(static_cast<size_t>(heads * count));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < count; ++i) values[h * count + i] = value(h, i);
  }
  return Tensor::from_vector(values, {heads, count}, dtype, device);
}

}  // namespace dssm
