// Statistics and control of the CUDA caching allocator (cuda/allocator.cu). Plain C++: usable
// from tests, benchmarks and the trainer without the CUDA headers.
#pragma once

#include <cstddef>

namespace dssm::cuda {

struct AllocatorStats {
  size_t in_use_bytes = 0;       // handed out to tensors now (rounded to size classes)
  size_t reserved_bytes = 0;     // obtained from cudaMalloc and not yet returned
  size_t peak_in_use_bytes = 0;  // the most in use at once since the start or reset_peak_stats()
  size_t cached_blocks = 0;      // free blocks waiting for reuse
  size_t malloc_calls = 0;       // cudaMalloc calls so far (a steady training loop makes none)
  size_t free_calls = 0;         // cudaFree calls so far (empty_cache and out-of-memory retries)
};

AllocatorStats allocator_stats();  // summed over all devices
// Returns every cached free block to CUDA (after waiting for queued work).
void empty_cache();
void reset_peak_stats();

}  // namespace dssm::cuda
