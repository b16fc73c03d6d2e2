// Creating tensors: empty, zeros, ones, full, arange, rand, randn, from_vector.
#include "cuda/backend.hpp"
#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

namespace dssm {

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) {
  default_generator().set_state(seed, 0);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    DSSM_CHECK(d >= 0, "empty", "negative dimension in shape {}", shape_str(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::arange(int64_t end, DType dtype, Device device) {
  return arange(0.0, static_cast<double>(end), 1.0, dtype, device);
}

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
  DSSM_CHECK(step != 0.0, "arange", "step must be non-zero");
  const double span = (end - start) / step;
  const int64_t n = span > 0 ? static_cast<int64_t>(std::ceil(span)) : 0;
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = start + step * i;
  return from_vector(values, {n}, dtype, device);
}

namespace {

// Element i of the draw reads philox(seed, first + i): see tensor/random.hpp.
Tensor random_tensor(const Shape& shape, Generator& gen, DType dtype, Device device, bool normal) {
  DSSM_CHECK(is_floating(dtype), normal ? "randn" : "rand", "expected a floating dtype, got {}",
             dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  const int64_t n = t.numel();
  const uint64_t first = gen.advance(static_cast<uint64_t>(n));
  if (device.is_cuda()) {
    cuda::fill_random(t, gen.seed(), first, normal);
    return t;
  }
  dispatch_floating(dtype, "rand", [&]<typename T>() {
    T* out = t.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const PhiloxWords r = philox4x32_10(gen.seed(), first + static_cast<uint64_t>(i));
      if constexpr (std::is_same_v<T, double>) {
        out[i] = normal ? normal_f64(r) : uniform_f64(r);
      } else {
        out[i] = static_cast<T>(normal ? normal_f32(r) : uniform_f32(r));
      }
    }
  });
  return t;
}

}  // namespace

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  return random_tensor(shape, gen, dtype, device, false);
}
Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  return random_tensor(shape, gen, dtype, device, true);
}
Tensor Tensor::rand(const Shape& shape, DType dtype, Device device) {
  return rand(shape, default_generator(), dtype, device);
}
Tensor Tensor::randn(const Shape& shape, DType dtype, Device device) {
  return randn(shape, default_generator(), dtype, device);
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype,
                           Device device) {
  DSSM_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), "from_vector",
             "{} values given for shape {} ({} elements)", values.size(), shape_str(shape),
             numel_of(shape));
  Tensor host = empty(shape, dtype_of<T>::value, Device::cpu());
  std::copy(values.begin(), values.end(), host.data<T>());
  if (dtype == host.dtype() && device.is_cpu()) return host;
  Tensor out = empty(shape, dtype, device);
  out.copy_from(host);
  return out;
}
template Tensor Tensor::from_vector(const std::vector<float>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<double>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int32_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int64_t>&, const Shape&, DType, Device);

}  // namespace dssm
