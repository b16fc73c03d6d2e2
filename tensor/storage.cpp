#include "tensor/storage.hpp"

#include <cstring>

#include "cuda/backend.hpp"
#include "tensor/cpu_allocator.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

Allocator* g_cuda_allocator = nullptr;

}  // namespace

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  if (g_cuda_allocator == nullptr) {
    fail("allocator", "device {} requested, but densessm was built without the CUDA backend",
         device.str());
  }
  cuda::require_device(device.index);
  return *g_cuda_allocator;
}

void register_allocator(Device::Kind kind, Allocator* allocator) {
  if (kind == Device::Kind::cuda) g_cuda_allocator = allocator;
}

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(nbytes);
}

Storage::~Storage() {
  if (data_ != nullptr) allocator_->deallocate(data_, nbytes_);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
  } else {
    cuda::copy_bytes(dst, dst_device, src, src_device, nbytes);
  }
}

}  // namespace dssm
