// Joining, cutting and indexing tensors: concat, stack, split, chunk, index_select, where,
// masked_fill. split and chunk return views (Tensor::narrow), so they cost no copy.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

// Joins tensors of equal shape except along `dim`. Backward: each input gets its slice of g.
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
// Joins tensors of equal shape along a new dim `dim`.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Views of consecutive slices of `sizes[k]` along `dim` (the sizes must add up to x.size(dim)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// `n` views along `dim` of ceil(size / n) each, the last one possibly smaller (as in PyTorch).
std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim);

// out = x with dim `dim` replaced by the rows index[0], index[1], ...: index is 1-D, i32 or
// i64. Backward: index-add (a row picked twice gets both gradients).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

// out[i] = cond[i] ? a[i] : b[i], all three broadcast (NumPy rules); cond of any dtype,
// nonzero is true. Differentiable in a and b, not in cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// out[i] = mask[i] ? value : x[i]; mask broadcasts to x's shape.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// What a scan of integer indices found: the first (row-major) position whose value lies outside
// [0, size) and is not the ignored value (-1 when none), and how many values were ignored.
// Used by index_select, embedding and cross_entropy to report bad indices before any kernel
// reads memory with them.
struct IndexScan {
  int64_t first_bad = -1;
  int64_t bad_value = 0;  // the value found at first_bad
  int64_t ignored = 0;
};
IndexScan scan_indices(const Tensor& index, int64_t size, std::optional<int64_t> ignore = {});
// "[1, 3]": the multi-index of flat position `flat` in `shape`, for error messages.
std::string position_str(const Shape& shape, int64_t flat);

// Helpers shared by the ops that take indices or accumulate in the compute type.
// The dtype arithmetic runs in: f32 for bf16, the dtype itself otherwise (see compute_t).
constexpr DType compute_dtype(DType t) {
  return t == DType::bf16 ? DType::f32 : t;
}
// Calls fn.template operator()<I>() with I = int32_t or int64_t; other dtypes are an error.
template <typename Fn>
decltype(auto) dispatch_index(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::i32:
      return fn.template operator()<int32_t>();
    case DType::i64:
      return fn.template operator()<int64_t>();
    default:
      fail(op, "expected integer indices (i32 or i64), got {}", dtype_name(t));
  }
}

}  // namespace dssm
