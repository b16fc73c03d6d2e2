#include "tensor/storage.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "cuda/backend.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

// 64-byte aligned host memory: a cache line, and enough for any SIMD load.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const size_t rounded = (nbytes + 63) / 64 * 64;
    void* ptr = std::aligned_alloc(64, rounded);
    if (ptr == nullptr) fail("cpu allocator", "out of memory allocating {} bytes", nbytes);
    return ptr;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

Allocator* g_cuda_allocator = nullptr;

}  // namespace

Allocator& allocator_for(Device device) {
  static CpuAllocator cpu_allocator;
  if (device.is_cpu()) return cpu_allocator;
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
