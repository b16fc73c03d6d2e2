// The CUDA runtime seam: error checking, device queries, the current stream, byte copies, and the
// launch helpers every kernel file uses (declared in cuda/backend.hpp and cuda/common.cuh).
//
// Streams: each device gets one stream, created on first use, and every kernel, copy and library
// call of densessm runs on it. Work is therefore ordered, which is what lets the caching
// allocator (cuda/allocator.cu) reuse a freed block at once.
#include <fmt/format.h>

#include <array>
#include <mutex>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"

namespace dssm::cuda {

void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clears the error if it is not sticky, so later calls can go on
  throw Error(fmt::format("{}: failed at {}:{}: {} ({})", call, file, line,
                          cudaGetErrorString(status), cudaGetErrorName(status)));
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: report none
      return 0;
    }
    return n;
  }();
  return count;
}

bool available() {
  return device_count() > 0;
}

// Makes `index` the current device of this thread, so that allocations and launches go there.
void require_device(int index) {
  const int count = device_count();
  DSSM_CHECK(count > 0, "cuda", "no CUDA device is visible (cuda:{} requested)", index);
  DSSM_CHECK(index >= 0 && index < count, "cuda", "device {} requested, {} visible", index, count);
  int current = -1;
  DSSM_CUDA_CHECK(cudaGetDevice(&current));
  if (current != index) DSSM_CUDA_CHECK(cudaSetDevice(index));
}

namespace {

constexpr int kMaxDevices = 16;

int current_device() {
  int device = 0;
  DSSM_CUDA_CHECK(cudaGetDevice(&device));
  DSSM_CHECK(device < kMaxDevices, "cuda", "device index {} beyond the supported {}", device,
             kMaxDevices);
  return device;
}

}  // namespace

cudaStream_t current_stream() {
  static std::array<cudaStream_t, kMaxDevices> streams{};
  static std::array<std::once_flag, kMaxDevices> created;
  const int device = current_device();
  std::call_once(created[device], [&] {
    // A blocking stream: it also orders against the legacy default stream, so a stray library
    // call on stream 0 cannot race with our work.
    DSSM_CUDA_CHECK(cudaStreamCreate(&streams[device]));
  });
  return streams[device];
}

void synchronize() {
  DSSM_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    DSSM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes,
                                        current_stream()));
    return;
  }
  const cudaMemcpyKind kind =
      dst_device.is_cuda()
          ? (src_device.is_cuda() ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
          : cudaMemcpyDeviceToHost;
  DSSM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, current_stream()));
  // The host reads the result (D2H) or may free its buffer as soon as we return (H2D).
  if (kind != cudaMemcpyDeviceToDevice) synchronize();
}

int multiprocessor_count() {
  static std::array<int, kMaxDevices> sm_count{};
  const int device = current_device();
  if (sm_count[device] == 0) {
    DSSM_CUDA_CHECK(
        cudaDeviceGetAttribute(&sm_count[device], cudaDevAttrMultiProcessorCount, device));
  }
  return sm_count[device];
}

int max_shared_memory_per_block() {
  static std::array<int, kMaxDevices> bytes{};
  const int device = current_device();
  if (bytes[device] == 0) {
    DSSM_CUDA_CHECK(
        cudaDeviceGetAttribute(&bytes[device], cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  }
  return bytes[device];
}

LaunchConfig elementwise_launch(int64_t n, unsigned threads) {
  // Enough blocks to keep every SM busy (2048 threads each); grid-stride loops do the rest.
  const int64_t max_blocks = int64_t{multiprocessor_count()} * (2048 / threads);
  const int64_t wanted = (n + threads - 1) / threads;
  return {static_cast<unsigned>(std::max<int64_t>(1, std::min(wanted, max_blocks))), threads};
}

// Drops size-1 dims and merges neighbours that are one run of memory: the linear-index-to-offset
// map is unchanged, and a kernel does fewer divisions per element.
StridedIndexer make_indexer(const Shape& shape, const Strides& strides) {
  DSSM_CHECK(shape.size() == strides.size(), "cuda indexer",
             "shape {} and strides {} differ in rank", shape_str(shape), shape_str(strides));
  std::vector<int64_t> sizes, steps;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!sizes.empty() && steps.back() == strides[d] * shape[d]) {
      sizes.back() *= shape[d];
      steps.back() = strides[d];
    } else {
      sizes.push_back(shape[d]);
      steps.push_back(strides[d]);
    }
  }
  StridedIndexer indexer;
  DSSM_CHECK(sizes.size() <= StridedIndexer::kMaxDims, "cuda indexer",
             "expected at most {} dims after merging, got {} (shape {}, strides {})",
             StridedIndexer::kMaxDims, sizes.size(), shape_str(shape), shape_str(strides));
  indexer.ndim = static_cast<int>(sizes.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    indexer.sizes[d] = sizes[d];
    indexer.strides[d] = steps[d];
  }
  return indexer;
}

StridedIndexer make_broadcast_indexer(const Tensor& t, const Shape& target) {
  DSSM_CHECK(t.dim() <= static_cast<int64_t>(target.size()), "cuda indexer",
             "cannot broadcast {} to shape {}", describe(t), shape_str(target));
  Strides strides(target.size(), 0);
  const size_t lead = target.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d) {
    DSSM_CHECK(t.shape()[d] == target[lead + d] || t.shape()[d] == 1, "cuda indexer",
               "cannot broadcast {} to shape {}", describe(t), shape_str(target));
    if (t.shape()[d] != 1) strides[lead + d] = t.strides()[d];
  }
  return make_indexer(target, strides);
}

}  // namespace dssm::cuda
