// The caching allocator of CUDA device memory. cudaMalloc and cudaFree are slow and synchronise
// the device, so freed blocks are kept on a free list per (device, size class) and handed out
// again to the next request of that class. A training loop that allocates the same shapes every
// step therefore stops calling cudaMalloc after its first step.
//
// Size classes: requests up to 1 MiB are rounded up to a multiple of 512 B, larger ones to a
// multiple of 2 MiB.
//
// Stream safety: densessm queues all work of a device on one stream (cuda/runtime.cu). A block
// freed while kernels that use it are still queued can be handed out at once: any work on the
// new owner is queued behind those kernels on the same stream. Code that uses other streams must
// synchronise them with ours before freeing tensors they touched.
#include <fmt/format.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/allocator.hpp"
#include "cuda/common.cuh"
#include "tensor/storage.hpp"

namespace dssm::cuda {
namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;
constexpr size_t kSmallGranularity = 512;
constexpr size_t kLargeGranularity = size_t{2} << 20;
constexpr size_t kMaxRequest = size_t{1} << 60;  // beyond any device; keeps rounding exact

size_t size_class(size_t nbytes) {
  const size_t granularity = nbytes <= kSmallLimit ? kSmallGranularity : kLargeGranularity;
  return (nbytes + granularity - 1) / granularity * granularity;
}

std::string mib(size_t bytes) {
  return fmt::format("{:.1f} MiB", bytes / 1048576.0);
}

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    int device = 0;
    DSSM_CUDA_CHECK(cudaGetDevice(&device));
    DSSM_CHECK(nbytes <= kMaxRequest, "cuda allocator", "cannot allocate {} bytes on cuda:{}",
               nbytes, device);
    const size_t size = size_class(nbytes);
    std::lock_guard lock(mutex_);
    std::vector<void*>& cached = free_[{device, size}];
    void* ptr = nullptr;
    if (!cached.empty()) {
      ptr = cached.back();
      cached.pop_back();
      --stats_.cached_blocks;
    } else {
      ptr = malloc_with_retry(nbytes, size, device);
    }
    live_[ptr] = {device, size};
    stats_.in_use_bytes += size;
    stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
    return ptr;
  }

  void deallocate(void* ptr, size_t) override {
    if (ptr == nullptr) return;
    std::lock_guard lock(mutex_);
    const auto it = live_.find(ptr);
    DSSM_CHECK(it != live_.end(), "cuda allocator", "freeing {} which it did not allocate", ptr);
    const Block block = it->second;
    live_.erase(it);
    stats_.in_use_bytes -= block.size;
    free_[{block.device, block.size}].push_back(ptr);
    ++stats_.cached_blocks;
  }

  AllocatorStats stats() {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  void empty_cache() {
    std::lock_guard lock(mutex_);
    release_cached();
  }

  void reset_peak() {
    std::lock_guard lock(mutex_);
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  }

 private:
  struct Block {
    int device;
    size_t size;
  };

  // cudaMalloc; on failure returns the cache to CUDA and tries once more before giving up.
  void* malloc_with_retry(size_t nbytes, size_t size, int device) {
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status != cudaSuccess) {
      cudaGetLastError();
      release_cached();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail("cuda allocator",
           "{} allocating {} bytes ({}) on cuda:{}: {} in use by tensors, {} reserved, peak {}; "
           "the device has {} free of {}",
           cudaGetErrorString(status), nbytes, mib(size), device, mib(stats_.in_use_bytes),
           mib(stats_.reserved_bytes), mib(stats_.peak_in_use_bytes), mib(free_bytes),
           mib(total_bytes));
    }
    ++stats_.malloc_calls;
    stats_.reserved_bytes += size;
    return ptr;
  }

  // Frees every cached block of every device. Caller holds the mutex.
  void release_cached() {
    int current = 0;
    DSSM_CUDA_CHECK(cudaGetDevice(&current));
    for (auto& [key, blocks] : free_) {
      if (blocks.empty()) continue;
      DSSM_CUDA_CHECK(cudaSetDevice(key.first));
      for (void* ptr : blocks) {
        DSSM_CUDA_CHECK(cudaFree(ptr));  // waits for queued work that may still use it
        ++stats_.free_calls;
        stats_.reserved_bytes -= key.second;
      }
      stats_.cached_blocks -= blocks.size();
      blocks.clear();
    }
    DSSM_CUDA_CHECK(cudaSetDevice(current));
  }

  std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;  // (device, size class) -> blocks
  std::unordered_map<void*, Block> live_;
  AllocatorStats stats_;
};

// Never destroyed: tensors held by static objects may be freed after main returns.
CachingAllocator& caching_allocator() {
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

// Makes the allocator the one Storage uses for Device::Kind::cuda, at static-init time.
const bool kRegistered = [] {
  register_allocator(Device::Kind::cuda, &caching_allocator());
  return true;
}();

}  // namespace

AllocatorStats allocator_stats() {
  return caching_allocator().stats();
}
void empty_cache() {
  caching_allocator().empty_cache();
}
void reset_peak_stats() {
  caching_allocator().reset_peak();
}

}  // namespace dssm::cuda
