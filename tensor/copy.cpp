// Tensor::copy_from and fill_: the strided, dtype-converting copy every conversion rests on.
#include <cstring>

#include "cuda/backend.hpp"
#include "tensor/error.hpp"
#include "tensor/strided_loop.hpp"
#include "tensor/tensor.hpp"

namespace dssm {
namespace {

template <typename To, typename From>
To convert(From value) {
  return static_cast<To>(static_cast<compute_t<From>>(value));
}

void cpu_copy(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), dst.nbytes());
    return;
  }
  dispatch_all(dst.dtype(), [&]<typename To>() {
    dispatch_all(src.dtype(), [&]<typename From>() {
      To* out = static_cast<To*>(dst.raw_data());
      const From* in = static_cast<const From*>(src.raw_data());
      for_each_row<2>(dst.shape(), {dst.strides(), src.strides()}, [&](const RowView<2>& row) {
        for (int64_t j = 0; j < row.length; ++j) {
          out[row.row_offset[0] + j * row.inner_stride[0]] =
              convert<To>(in[row.row_offset[1] + j * row.inner_stride[1]]);
        }
      });
    });
  });
}

}  // namespace

void Tensor::copy_from(const Tensor& src) const {
  DSSM_CHECK(shape() == src.shape(), "copy", "destination {} and source {} differ in shape",
             describe(*this), describe(src));
  if (numel() == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) return cpu_copy(*this, src);
  if (device() == src.device()) return cuda::copy_strided(*this, src);
  // Across devices: make the source dense in the destination's dtype on its own device, move
  // the bytes, then scatter into the destination's layout if it is not dense.
  Tensor dense = Tensor::empty(src.shape(), dtype(), src.device());
  dense.copy_from(src);
  if (is_contiguous()) {
    copy_bytes(raw_data(), device(), dense.raw_data(), dense.device(), nbytes());
  } else {
    Tensor landed = Tensor::empty(shape(), dtype(), device());
    copy_bytes(landed.raw_data(), device(), dense.raw_data(), dense.device(), nbytes());
    copy_from(landed);
  }
}

void Tensor::fill_(double value) const {
  if (numel() == 0) return;
  if (is_cuda()) return cuda::fill(*this, value);
  dispatch_all(dtype(), [&]<typename T>() {
    const T v = static_cast<T>(static_cast<compute_t<T>>(value));
    T* out = static_cast<T*>(raw_data());
    for_each_row<1>(shape(), {strides()}, [&](const RowView<1>& row) {
      for (int64_t j = 0; j < row.length; ++j) out[row.row_offset[0] + j * row.inner_stride[0]] = v;
    });
  });
}

}  // namespace dssm
