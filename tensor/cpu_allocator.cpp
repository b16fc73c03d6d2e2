#include "tensor/cpu_allocator.hpp"

#include <cstdlib>

#include "tensor/error.hpp"

namespace dssm {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheEnabled = false;
#else
constexpr bool kCacheEnabled = true;
#endif

}  // namespace

CpuAllocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

CpuAllocator::~CpuAllocator() { empty_cache(); }

size_t CpuAllocator::rounded_size(size_t nbytes) {
  const size_t granularity = nbytes >= kMinCached ? kMinCached : 64;
  return (nbytes + granularity - 1) / granularity * granularity;
}

void* CpuAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t size = rounded_size(nbytes);
  if (kCacheEnabled && size >= kMinCached) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = free_blocks_.find(size);
    if (it != free_blocks_.end()) {
      void* ptr = it->second;
      free_blocks_.erase(it);
      stats_.cached_bytes -= size;
      ++stats_.cache_hits;
      return ptr;
    }
  }
  void* ptr = std::aligned_alloc(64, size);
  if (ptr == nullptr && size >= kMinCached) {  // give the cache back and try once more
    empty_cache();
    ptr = std::aligned_alloc(64, size);
  }
  if (ptr == nullptr) fail("cpu allocator", "out of memory allocating {} bytes", nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.system_allocations;
  return ptr;
}

void CpuAllocator::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  const size_t size = rounded_size(nbytes);
  if (kCacheEnabled && size >= kMinCached) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.cached_bytes + size <= kMaxCachedBytes) {
      free_blocks_.emplace(size, ptr);
      stats_.cached_bytes += size;
      return;
    }
  }
  std::free(ptr);
}

CpuAllocatorStats CpuAllocator::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CpuAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, ptr] : free_blocks_) std::free(ptr);
  free_blocks_.clear();
  stats_.cached_bytes = 0;
}

}  // namespace dssm
