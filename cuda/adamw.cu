// The trainer's multi-tensor kernels: the AdamW update of every parameter in one launch, and the
// sum of squares of every gradient (for the global norm of train/clip.hpp).
//
// Both work from a table uploaded once per call: one Segment per tensor (its pointers and size)
// and one Chunk per kChunk consecutive elements of a tensor. Block b handles chunk b, so a launch
// covers hundreds of tensors of any sizes with no per-tensor launch overhead.
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda/backend.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels_train.hpp"

namespace dssm::cuda {
namespace {

constexpr int64_t kChunk = 16384;
constexpr unsigned kThreads = 256;

struct Segment {
  float* param;  // null for sum_of_squares
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t numel;
  float keep;  // 1 - lr * weight_decay for a decayed parameter, else 1
};

struct Chunk {
  int64_t segment;
  int64_t begin;
};

// The table on the device: the segments, then the chunks (both 8-byte aligned).
struct Table {
  Tensor storage;  // i64 words holding the bytes
  const Segment* segments;
  const Chunk* chunks;
  int64_t num_chunks;
};

Table upload(const std::vector<Segment>& segments, Device device) {
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < segments.size(); ++s) {
    for (int64_t begin = 0; begin < segments[s].numel; begin += kChunk) {
      chunks.push_back({static_cast<int64_t>(s), begin});
    }
  }
  static_assert(sizeof(Segment) % 8 == 0 && sizeof(Chunk) % 8 == 0);
  const size_t segment_bytes = segments.size() * sizeof(Segment);
  const size_t chunk_bytes = chunks.size() * sizeof(Chunk);
  std::vector<int64_t> words((segment_bytes + chunk_bytes) / 8);
  std::memcpy(words.data(), segments.data(), segment_bytes);
  std::memcpy(reinterpret_cast<char*>(words.data()) + segment_bytes, chunks.data(), chunk_bytes);
  Table table;
  table.storage = Tensor::empty({static_cast<int64_t>(words.size())}, DType::i64, device);
  cuda::copy_bytes(table.storage.raw_data(), device, words.data(), Device::cpu(), words.size() * 8);
  const char* base = static_cast<const char*>(table.storage.raw_data());
  table.segments = reinterpret_cast<const Segment*>(base);
  table.chunks = reinterpret_cast<const Chunk*>(base + segment_bytes);
  table.num_chunks = static_cast<int64_t>(chunks.size());
  return table;
}

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p = p keep - step_size m / (sqrt(v) / sqrt_bc2
// + eps) with g the gradient times grad_scale and step_size = lr / (1 - beta1^t).
__global__ void adamw_kernel(const Segment* segments, const Chunk* chunks, float beta1, float beta2,
                             float step_size, float sqrt_bias_correction2, float eps,
                             float grad_scale) {
  const Chunk chunk = chunks[blockIdx.x];
  const Segment s = segments[chunk.segment];
  const int64_t end = min(chunk.begin + kChunk, s.numel);
  for (int64_t i = chunk.begin + threadIdx.x; i < end; i += blockDim.x) {
    const float g = s.grad[i] * grad_scale;
    const float m = beta1 * s.exp_avg[i] + (1.0f - beta1) * g;
    const float v = beta2 * s.exp_avg_sq[i] + (1.0f - beta2) * g * g;
    s.exp_avg[i] = m;
    s.exp_avg_sq[i] = v;
    s.param[i] = s.param[i] * s.keep - step_size * m / (sqrtf(v) / sqrt_bias_correction2 + eps);
  }
}

// partials[b] = sum of x^2 over chunk b, accumulated in f32.
__global__ void sum_squares_kernel(const Segment* segments, const Chunk* chunks, float* partials) {
  const Chunk chunk = chunks[blockIdx.x];
  const Segment s = segments[chunk.segment];
  const int64_t end = min(chunk.begin + kChunk, s.numel);
  float sum = 0.0f;
  for (int64_t i = chunk.begin + threadIdx.x; i < end; i += blockDim.x)
    sum += s.grad[i] * s.grad[i];
  // Within each warp, then across the block's warps through shared memory.
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  __shared__ float warp_sums[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (unsigned w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
    partials[blockIdx.x] = total;
  }
}

void check_f32(const Tensor& t, const char* what, const Device& device) {
  DSSM_CHECK(t.dtype() == DType::f32 && t.is_contiguous() && t.device() == device, what,
             "expected a contiguous f32 tensor on {}, got {}", device.str(), describe(t));
}

}  // namespace

void adamw_step(const std::vector<AdamWTensor>& tensors, const Tensor& exp_avg,
                const Tensor& exp_avg_sq, const AdamWHyper& h) {
  if (tensors.empty()) return;
  const Device device = exp_avg.device();
  require_device(device.index);
  check_f32(exp_avg, "adamw_step", device);
  check_f32(exp_avg_sq, "adamw_step", device);
  std::vector<Segment> segments;
  for (const AdamWTensor& t : tensors) {
    check_f32(t.param, "adamw_step", device);
    check_f32(t.grad, "adamw_step", device);
    DSSM_CHECK(t.state_offset + t.param.numel() <= exp_avg.numel(), "adamw_step",
               "moments [{}, {}) past the state buffer of {} elements", t.state_offset,
               t.state_offset + t.param.numel(), exp_avg.numel());
    segments.push_back(
        {.param = t.param.data<float>(),
         .grad = t.grad.data<float>(),
         .exp_avg = exp_avg.data<float>() + t.state_offset,
         .exp_avg_sq = exp_avg_sq.data<float>() + t.state_offset,
         .numel = t.param.numel(),
         .keep = t.weight_decay ? static_cast<float>(1.0 - h.lr * h.weight_decay) : 1.0f});
  }
  const Table table = upload(segments, device);
  if (table.num_chunks == 0) return;
  adamw_kernel<<<static_cast<unsigned>(table.num_chunks), kThreads, 0, current_stream()>>>(
      table.segments, table.chunks, static_cast<float>(h.beta1), static_cast<float>(h.beta2),
      static_cast<float>(h.lr / h.bias_correction1),
      static_cast<float>(std::sqrt(h.bias_correction2)), static_cast<float>(h.eps),
      static_cast<float>(h.grad_scale));
  DSSM_CUDA_CHECK_LAUNCH("adamw_step");
}

double sum_of_squares(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0.0;
  const Device device = tensors.front().device();
  require_device(device.index);
  std::vector<Segment> segments;
  for (const Tensor& t : tensors) {
    check_f32(t, "sum_of_squares", device);
    segments.push_back({.param = nullptr,
                        .grad = t.data<float>(),
                        .exp_avg = nullptr,
                        .exp_avg_sq = nullptr,
                        .numel = t.numel(),
                        .keep = 1.0f});
  }
  const Table table = upload(segments, device);
  if (table.num_chunks == 0) return 0.0;
  const Tensor partials = Tensor::empty({table.num_chunks}, DType::f32, device);
  sum_squares_kernel<<<static_cast<unsigned>(table.num_chunks), kThreads, 0, current_stream()>>>(
      table.segments, table.chunks, partials.data<float>());
  DSSM_CUDA_CHECK_LAUNCH("sum_of_squares");
  double total = 0.0;
  for (float p : partials.to_vector<float>()) total += p;
  return total;
}

}  // namespace dssm::cuda
