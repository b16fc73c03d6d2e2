// The CUDA kernels of every op, one entry point per op (implemented in cuda/<op>.cu). Each takes
// tensors already on the same CUDA device, outputs allocated by the caller, and launches on the
// current stream. The op files in ops/ check shapes and dtypes before calling these.
// A build without CUDA gets the throwing versions in cuda/absent.cpp.
#pragma once

#include "ops/elementwise_math.hpp"
#include "ops/reduce.hpp"
#include "tensor/tensor.hpp"

namespace dssm::cuda {

// ops/unary.cpp: out = f(x); grad_in = grad_out * f'(saved). x, out, saved contiguous.
void unary(UnaryOp op, const Tensor& out, const Tensor& x, double param);
void unary_backward(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out, const Tensor& saved,
                    double param);
// ops/binary.cpp: out (contiguous) = a (op) b with a, b broadcast to out's shape (any strides).
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
// ops/reduce.cpp: out[r] = reduce(rows[r, :]) over a contiguous [outer, inner] tensor; for max
// also indices[r] = the first position of the maximum (indices may be undefined).
void reduce_rows(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& rows);
// out[r, indices[r]] = values[r] (out pre-zeroed, [outer, inner]).
void scatter_rows(const Tensor& out, const Tensor& values, const Tensor& indices);
// ops/matmul.cpp: out[b] = a[b] @ b[b] (+ out[b] when `accumulate`); a, b are [B, M, K],
// [B, K, N] with one of the last two strides 1 (row- or column-major); out is contiguous
// [B, M, N].
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate = false);

}  // namespace dssm::cuda
