// CUDA kernels of retention (ops/retention_*.cpp): the decay mask of the parallel form, the
// decayed scan over chunk states of the chunkwise form, and the fused recurrent step. The GEMMs
// around them are cuda::matmul's. Decays are computed in float64 as exp(p log gamma).
#include <algorithm>
#include <cmath>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels_retention.hpp"

namespace dssm::cuda {
namespace {

// One value per head, passed to a kernel by value (no device copy, no synchronisation).
constexpr int kMaxHeads = 64;
struct PerHead {
  double value[kMaxHeads];
};

PerHead per_head(const std::vector<double>& values, const char* op) {
  check(values.size() <= kMaxHeads, op, "expected at most {} heads on CUDA, got {}", kMaxHeads,
        values.size());
  PerHead p{};
  for (size_t h = 0; h < values.size(); ++h) p.value[h] = values[h];
  return p;
}

void check_dense(const char* op, const Tensor& t) {
  check(t.is_contiguous(), op, "CUDA kernel expects contiguous tensors, got a view {}",
        describe(t));
}

// mask[h, n, m] = r_n gamma_h^(n-m) for m <= n, else 0 (r_n = 1 without normalisation).
template <typename T>
__global__ void decay_mask_kernel(T* mask, int64_t length, int64_t total, PerHead log_gamma,
                                  PerHead gamma, bool normalize) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t m = i % length, n = i / length % length, h = i / (length * length);
    double value = 0.0;
    if (m <= n) {
      value = exp(static_cast<double>(n - m) * log_gamma.value[h]);
      if (normalize) {
        const double g = gamma.value[h];
        const double rows =
            g == 1.0 ? static_cast<double>(n + 1)
                     : -expm1(static_cast<double>(n + 1) * log_gamma.value[h]) / (1.0 - g);
        value *= rsqrt(rows);
      }
    }
    mask[i] = from_compute<T>(value);
  }
}

// Exclusive decayed scan over chunks, one thread per (batch*head, element of the state):
// out[j] = sum over earlier chunks (later ones when reverse) of decay^(distance - 1) in[j'].
template <typename T>
__global__ void chunk_scan_kernel(T* out, const T* in, int64_t heads, int64_t chunks, int64_t inner,
                                  int64_t total, PerHead decay, bool reverse) {
  using Acc = decltype(to_compute(in[0]));
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t bh = i / inner, e = i % inner;
    const Acc a = static_cast<Acc>(decay.value[bh % heads]);
    const int64_t base = bh * chunks * inner + e;
    Acc acc = 0;
    for (int64_t step = 0; step < chunks; ++step) {
      const int64_t at = base + (reverse ? chunks - 1 - step : step) * inner;
      const Acc u = to_compute(in[at]);
      out[at] = from_compute<T>(acc);
      acc = a * acc + u;
    }
  }
}

// new_state[d, e] = gamma state[d, e] + k[d] v[e];  out[e] = scale * sum_d q[d] new_state[d, e].
// One thread per (batch*head, e): consecutive threads read consecutive state entries.
template <typename T>
__global__ void step_kernel(T* out, T* new_state, const T* q, const T* k, const T* v,
                            const T* state, int64_t heads, int64_t dk, int64_t dv, int64_t total,
                            PerHead gamma, PerHead scale) {
  using Acc = decltype(to_compute(q[0]));
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t bh = i / dv, e = i % dv;
    const Acc g = static_cast<Acc>(gamma.value[bh % heads]);
    const Acc ve = to_compute(v[i]);
    Acc acc = 0;
    for (int64_t d = 0; d < dk; ++d) {
      const int64_t at = (bh * dk + d) * dv + e;
      const Acc s = g * to_compute(state[at]) + to_compute(k[bh * dk + d]) * ve;
      new_state[at] = from_compute<T>(s);
      acc += to_compute(q[bh * dk + d]) * s;
    }
    out[i] = from_compute<T>(static_cast<Acc>(scale.value[bh % heads]) * acc);
  }
}

}  // namespace

void retention_decay_mask(const Tensor& mask, const std::vector<double>& gammas, bool normalize) {
  check_dense("retention_decay_mask", mask);
  require_device(mask.device().index);
  const int64_t total = mask.numel();
  if (total == 0) return;
  std::vector<double> log_gammas;
  for (double g : gammas) log_gammas.push_back(std::log(g));
  const PerHead log_gamma = per_head(log_gammas, "retention_decay_mask");
  const PerHead gamma = per_head(gammas, "retention_decay_mask");
  dispatch_floating(mask.dtype(), "retention_decay_mask", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    decay_mask_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(mask), mask.size(1), total, log_gamma, gamma, normalize);
    DSSM_CUDA_CHECK_LAUNCH("retention_decay_mask");
  });
}

void retention_chunk_scan(const Tensor& out, const Tensor& in, const std::vector<double>& decay,
                          bool reverse) {
  check_dense("retention_chunk_scan", out), check_dense("retention_chunk_scan", in);
  require_device(in.device().index);
  const int64_t heads = in.size(1), chunks = in.size(2),
                inner = in.numel() / std::max<int64_t>(in.size(0) * heads * chunks, 1);
  const int64_t total = in.size(0) * heads * inner;
  if (total == 0 || chunks == 0) return;
  const PerHead per_head_decay = per_head(decay, "retention_chunk_scan");
  dispatch_floating(in.dtype(), "retention_chunk_scan", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    chunk_scan_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(in), heads, chunks, inner, total, per_head_decay,
        reverse);
    DSSM_CUDA_CHECK_LAUNCH("retention_chunk_scan");
  });
}

void retention_step(const Tensor& out, const Tensor& new_state, const Tensor& q, const Tensor& k,
                    const Tensor& v, const Tensor& state, const std::vector<double>& gammas,
                    const std::vector<double>& scales) {
  for (const Tensor* t : {&out, &new_state, &q, &k, &v, &state}) check_dense("retention_step", *t);
  require_device(q.device().index);
  const int64_t heads = q.size(1), dk = q.size(2), dv = v.size(2);
  const int64_t total = v.numel();
  if (total == 0) return;
  const PerHead gamma = per_head(gammas, "retention_step");
  const PerHead scale = per_head(scales, "retention_step");
  dispatch_floating(q.dtype(), "retention_step", [&]<typename T>() {
    const LaunchConfig launch = elementwise_launch(total);
    step_kernel<<<launch.blocks, launch.threads, 0, current_stream()>>>(
        device_data<T>(out), device_data<T>(new_state), device_data<T>(q), device_data<T>(k),
        device_data<T>(v), device_data<T>(state), heads, dk, dv, total, gamma, scale);
    DSSM_CUDA_CHECK_LAUNCH("retention_step");
  });
}

}  // namespace dssm::cuda
