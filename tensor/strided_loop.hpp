// The one loop behind every CPU kernel that reads or writes non-contiguous or broadcast tensors.
//
// A tensor's elements sit at offset + sum_d index[d] * stride[d]. We split the index space into
// rows (every dim but the last) and walk each row with a fixed inner stride; rows run in
// parallel with OpenMP when there is enough work. A broadcast operand simply has stride 0.
#pragma once

#include <array>
#include <cstdint>

#include "tensor/shape.hpp"

namespace dssm {

// Per operand k: element (row r, column j) is at row_offset[k] + j * inner_stride[k].
template <size_t K>
struct RowView {
  std::array<int64_t, K> row_offset;
  std::array<int64_t, K> inner_stride;
  int64_t length;
};

// Calls fn(const RowView<K>&) for every row of `shape`, with operand k laid out by strides[k].
template <size_t K, typename Fn>
void for_each_row(const Shape& shape, const std::array<Strides, K>& strides, Fn&& fn) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t length = ndim == 0 ? 1 : shape.back();
  const int64_t rows = length == 0 ? 0 : numel_of(shape) / length;
  const bool parallel = rows > 1 && numel_of(shape) >= (int64_t{1} << 15);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    RowView<K> view{};
    view.length = length;
    int64_t rest = r;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      const int64_t index = rest % shape[d];
      rest /= shape[d];
      for (size_t k = 0; k < K; ++k) view.row_offset[k] += index * strides[k][d];
    }
    for (size_t k = 0; k < K; ++k) view.inner_stride[k] = ndim == 0 ? 1 : strides[k][ndim - 1];
    fn(view);
  }
}

// Strides that read a tensor of `shape`/`strides` as if it had the (broadcast) shape `target`:
// missing leading dims and stretched dims get stride 0.
inline Strides broadcast_strides(const Shape& shape, const Strides& strides, const Shape& target) {
  Strides out(target.size(), 0);
  const size_t lead = target.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) {
    out[lead + i] = shape[i] == 1 ? 0 : strides[i];
  }
  return out;
}

}  // namespace dssm
