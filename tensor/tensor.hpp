// Tensor: a handle to (storage, shape, strides, offset, dtype). Copying a Tensor copies the
// handle, not the data, as in PyTorch. Views share storage. The autograd fields (grad, the node
// that produced the tensor) hang off the same impl but are owned by autograd/.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.hpp"
#include "tensor/dtype.hpp"
#include "tensor/random.hpp"
#include "tensor/shape.hpp"
#include "tensor/storage.hpp"

namespace dssm {

struct AutogradMeta;  // autograd/graph.hpp

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;     // in elements
  int64_t offset = 0;  // in elements, into storage
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null: no gradient wanted, no producing node
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (e.g. "no gradient")
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return numel_of(shape()); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool same_storage(const Tensor& other) const { return storage() == other.storage(); }

  // Pointer to the first element. data<T>() checks that T matches the dtype.
  void* raw_data() const;
  template <typename T>
  T* data() const {
    DSSM_CHECK(dtype_of<T>::value == dtype(), "Tensor::data", "requested {} but tensor is {}",
               dtype_name(dtype_of<T>::value), dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }

  // ---- creation (tensor/factory.cpp) ----------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  static Tensor arange(int64_t end, DType dtype = DType::i64, Device device = Device::cpu());
  static Tensor arange(double start, double end, double step, DType dtype = DType::f32,
                       Device device = Device::cpu());
  // Uniform in [0, 1) / standard normal, from the counter-based stream of tensor/random.hpp.
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32,
                     Device device = Device::cpu());
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32,
                      Device device = Device::cpu());
  static Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // Copies host values (converted to `dtype`) into a new tensor.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            DType dtype = dtype_of<T>::value, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu()) {
    return full({}, value, dtype, device);
  }

  // ---- reading values back (any device; copies to the host) ------------------------------------
  double item() const;  // the value of a one-element tensor, as double
  template <typename T>
  std::vector<T> to_vector() const;  // all elements in row-major order, converted to T
  std::string str() const;           // a printout with shape, dtype and device

  // ---- raw views and copies (no autograd; the differentiable ones are in ops/) -----------------
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;
  // Writes src's values into this tensor (same shape; any strides, dtypes and devices).
  void copy_from(const Tensor& src) const;
  void fill_(double value) const;

  // ---- differentiable views and conversions (defined in ops/view.cpp, ops/convert.cpp) --------
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;  // reshape that never copies (throws instead)
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten() const { return reshape({numel()}); }
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor clone() const;

  // ---- autograd (defined in autograd/) --------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad = true);
  Tensor grad() const;  // undefined until a backward pass reached this leaf
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient
  bool is_leaf() const;
  Tensor detach() const;  // same data, cut from the graph
  // Runs reverse-mode differentiation from this tensor. `grad` defaults to 1 for a scalar.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::string describe(const Tensor& t);  // "f32[2, 3] on cpu", for error messages

}  // namespace dssm
