#include "tensor/tensor.hpp"

#include <fmt/format.h>

#include "tensor/error.hpp"

namespace dssm {

TensorImpl& Tensor::impl() const {
  DSSM_CHECK(impl_ != nullptr, "Tensor", "operation on an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "Tensor::size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] != 1 && strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto* base = static_cast<char*>(storage()->data());
  return base + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  DSSM_CHECK(shape.size() == strides.size(), "as_strided", "shape {} and strides {} differ in rank",
             shape_str(shape), shape_str(strides));
  // The furthest element the view can touch must lie inside the storage.
  int64_t last = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    DSSM_CHECK(shape[d] >= 0 && strides[d] >= 0, "as_strided", "negative size or stride in {} / {}",
               shape_str(shape), shape_str(strides));
    if (shape[d] == 0)
      last = offset - 1;
    else if (last >= offset)
      last += (shape[d] - 1) * strides[d];
  }
  const int64_t capacity = static_cast<int64_t>(storage()->nbytes() / dtype_size(dtype()));
  DSSM_CHECK(offset >= 0 && last < capacity, "as_strided",
             "view {} strides {} offset {} reaches element {} of a storage of {} elements",
             shape_str(shape), shape_str(strides), offset, last, capacity);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

double Tensor::item() const {
  DSSM_CHECK(numel() == 1, "item", "expected a tensor with one element, got {}", describe(*this));
  return to_vector<double>()[0];
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  const Tensor host = detach().to(Device::cpu()).contiguous();
  std::vector<T> out(static_cast<size_t>(numel()));
  dispatch_all(dtype(), [&]<typename S>() {
    const S* src = host.data<S>();
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<T>(static_cast<compute_t<S>>(src[i]));
    }
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return fmt::format("{}{} on {}", dtype_name(t.dtype()), shape_str(t.shape()), t.device().str());
}

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  const std::vector<double> values = to_vector<double>();
  constexpr size_t kShown = 8;
  std::string body;
  for (size_t i = 0; i < values.size() && i < kShown; ++i) {
    body += fmt::format("{}{:.6g}", i ? ", " : "", values[i]);
  }
  if (values.size() > kShown) body += fmt::format(", ... ({} more)", values.size() - kShown);
  return fmt::format("tensor([{}], {})", body, describe(*this));
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    try {
      return cuda(std::stoi(text.substr(5)));
    } catch (const std::exception&) {
    }
  }
  fail("device", "unknown device '{}' (expected cpu, cuda or cuda:N)", text);
}

DType dtype_from_name(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "F32") return DType::f32;
  if (name == "f64" || name == "float64" || name == "F64") return DType::f64;
  if (name == "bf16" || name == "bfloat16" || name == "BF16") return DType::bf16;
  if (name == "i32" || name == "int32" || name == "I32") return DType::i32;
  if (name == "i64" || name == "int64" || name == "I64") return DType::i64;
  fail("dtype", "unknown dtype '{}' (expected f32, f64, bf16, i32 or i64)", name);
}

}  // namespace dssm
