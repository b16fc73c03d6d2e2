// The tensor-core masked intra-chunk product of bench/retention_mma_scores.cu: a measured
// alternative to the op's cuBLASLt GEMM + mask, built into retention_bench only.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm::bench {

// Whether mma_masked_scores takes these operands: CUDA, bf16, contiguous, 16-byte aligned,
// [batch, C, K] with C a multiple of 128 and K of 32.
bool mma_masked_scores_fit(const Tensor& a, const Tensor& b);

// out [batch, C, C] = (a b^T) ⊙ M_j for a, b [batch, C, K], batch = (batch, heads, chunks): the
// mask of cuda::retention_chunk_mask, from the same f32 tables row_scale [heads, chunks * C] and
// powers [heads, C].
void mma_masked_scores(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& row_scale,
                       const Tensor& powers, int64_t heads, int64_t chunks);

}  // namespace dssm::bench
