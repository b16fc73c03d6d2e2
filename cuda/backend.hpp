// The narrow interface between the device-independent layers and the CUDA backend.
//
// Everything here is implemented in cuda/*.cu when densessm is built with CUDA, and by
// cuda/absent.cpp (each function throws "built without CUDA") otherwise. Op kernels are declared
// in cuda/kernels.hpp the same way. Tensors reach these functions only when they live on a
// CUDA device, which a build without CUDA can never create.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/device.hpp"

namespace dssm {
class Tensor;
}

namespace dssm::cuda {

bool available();          // built with CUDA and at least one device is visible
int device_count();        // 0 when none (or built without CUDA)
void require_device(int index);  // throws a readable error if device `index` is not usable
void synchronize();        // waits for all work queued on the current stream

// Byte copies where at least one side is a CUDA device.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
// Strided, dtype-converting copy between two tensors on the same CUDA device.
void copy_strided(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);
// The stream of tensor/random.hpp: element i from philox(seed, first + i).
void fill_random(const Tensor& dst, uint64_t seed, uint64_t first, bool normal);

}  // namespace dssm::cuda
