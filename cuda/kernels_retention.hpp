// CUDA kernels of retention and rotary (implemented in cuda/retention.cu and cuda/rotary.cu; a
// build without CUDA gets the throwing versions in cuda/absent_retention.cpp). The GEMMs of the
// parallel and chunkwise forms go through cuda::matmul (cuBLASLt); these are the pieces around
// them. Tensors are contiguous, on one CUDA device, outputs allocated by the caller; per-head
// decays are passed by value (at most 64 heads).
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm::cuda {

// mask [heads, L, L]: gamma_h^(n-m) for n >= m, else 0; row n scaled by r_n when `normalize`.
void retention_decay_mask(const Tensor& mask, const std::vector<double>& gammas, bool normalize);

// states [batch, heads, chunks, inner]: the exclusive decayed scan over chunks with decay[h],
//   forward: out[j] = decay * out[j-1] + in[j-1], out[0] = 0
//   reverse: out[j] = decay * out[j+1] + in[j+1], out[chunks-1] = 0   (its adjoint)
void retention_chunk_scan(const Tensor& out, const Tensor& in, const std::vector<double>& decay,
                          bool reverse);

// The chunkwise form's intra-chunk decay mask M_j, applied in place to the scores
// [batch * heads * chunks, C, C]: row i of chunk j of head h is multiplied by
// row_scale[h, j C + i] * powers[h, i - i'] at column i' <= i and zeroed above the diagonal.
// row_scale [heads, chunks * C] and powers [heads, C] are in the compute dtype (f32; f64 for f64).
void retention_chunk_mask(const Tensor& scores, const Tensor& row_scale, const Tensor& powers,
                          int64_t heads, int64_t chunks);

// Per-row decays: out[b, h, n, :] = add[b, h, n, :] + x[b, h, n, :] * table[h, n % period], for
// x [batch, heads, rows, d]; `add` may be undefined (then 0) and out may be x or add. table
// [heads, period] in the compute dtype (f32; f64 for f64).
void retention_scale_rows(const Tensor& out, const Tensor& x, const Tensor& add,
                          const Tensor& table, int64_t period);

// One recurrent step: new_state = gamma_h state + k^T v; out = scale_h * q new_state.
// q, k [batch, heads, dk], v, out [batch, heads, dv], state, new_state [batch, heads, dk, dv].
void retention_step(const Tensor& out, const Tensor& new_state, const Tensor& q, const Tensor& k,
                    const Tensor& v, const Tensor& state, const std::vector<double>& gammas,
                    const std::vector<double>& scales);

// Rotary position encoding of x [rows, length, dim] at positions offset + l (ops/rotary.hpp),
// pair i turned by (offset + l) base^(-i / divisor); `inverse` rotates by the opposite angles
// (the backward).
void rotary(const Tensor& out, const Tensor& x, int64_t offset, bool inverse, double base,
            double divisor);

}  // namespace dssm::cuda
