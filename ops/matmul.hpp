// Matrix products. matmul follows torch.matmul for the cases the models use:
//   [M, K] @ [K, N], [..., M, K] @ [K, N] and [M, K] @ [..., K, N] (a weight shared over the
//   batch), and [..., M, K] @ [..., K, N] with equal batch dims.
// Transposed operands (x.transpose(-1, -2)) are passed to the GEMM as such, without a copy.
#pragma once

#include "tensor/tensor.hpp"

namespace dssm {

Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);  // [B, M, K] @ [B, K, N] -> [B, M, N]

}  // namespace dssm
