// Storage: one reference-counted buffer of bytes on one device, obtained from that device's
// allocator and handed back to it when the last tensor viewing it goes away.
#pragma once

#include <cstddef>
#include <memory>

#include "tensor/device.hpp"

namespace dssm {

// The seam between tensors and device memory. The CPU allocator lives in tensor/; the CUDA
// caching allocator lives in cuda/ and registers itself when the CUDA backend is built.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
};

// The allocator for a device; throws if that device's backend is not built or not present.
Allocator& allocator_for(Device device);
// Called once by a backend (cuda/) to provide the allocator of its device kind.
void register_allocator(Device::Kind kind, Allocator* allocator);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

// Copies nbytes between two buffers on any pair of devices (the backend picks the transfer).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace dssm
