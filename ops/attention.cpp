// Causal attention: shape checks, the composite path (the ops LLaMA used before this op), and the
// fused path on cuDNN with its backward (see ops/attention.hpp; the flash-attention math is
// explained in cuda/attention_cudnn.cpp).
#include "ops/attention.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "autograd/graph.hpp"
#include "cuda/kernels_attention.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

constexpr const char* kOp = "causal_attention";

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset) {
  DSSM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.shape() == v.shape() &&
                 q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
             kOp, "expected q [B, H, T, d], k and v [B, H, S, d], got {}, {}, {}", describe(q),
             describe(k), describe(v));
  DSSM_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(), kOp,
             "expected q, k, v of one floating dtype, got {}, {}, {}", describe(q), describe(k),
             describe(v));
  DSSM_CHECK(k.device() == q.device() && v.device() == q.device(), kOp,
             "expected q, k, v on one device, got {}, {}, {}", describe(q), describe(k),
             describe(v));
  DSSM_CHECK(k.size(2) > 0 && offset >= 0, kOp,
             "expected at least one key and offset >= 0 (so that every query sees a key), got {} "
             "keys and offset {}",
             k.size(2), offset);
}

// mask[i, j] = 1 where query i may not see key j (j > i + offset). The masks of the last few
// shapes are kept on their device: building a [T, S] mask on the host and copying it over costs
// more than the attention itself. (Never destroyed: they may outlive the CUDA context.)
Tensor causal_mask(int64_t queries, int64_t keys, int64_t offset, Device device) {
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, int>;
  static std::mutex mutex;
  static auto* cache = new std::map<Key, Tensor>();
  constexpr size_t kKept = 8;
  const Key key{queries, keys, offset, device.is_cuda(), device.index};
  std::lock_guard lock(mutex);
  if (const auto found = cache->find(key); found != cache->end()) return found->second;
  std::vector<int32_t> values(static_cast<size_t>(queries * keys));
  for (int64_t i = 0; i < queries; ++i)
    for (int64_t j = 0; j < keys; ++j) values[i * keys + j] = j > offset + i;
  if (cache->size() >= kKept) cache->clear();
  return cache->emplace(key, Tensor::from_vector(values, {queries, keys}).to(device)).first->second;
}

// cuDNN reads q, k, v in place when their last dim is contiguous, their other strides are
// multiples of 8 (size-1 dims aside) and they start 16-byte aligned (any view of a [B, T, H, d]
// projection does).
bool cudnn_readable(const Tensor& t) {
  bool readable = t.strides()[3] == 1 && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
  for (int64_t i = 0; i < 3; ++i)
    readable = readable && (t.size(i) == 1 || t.strides()[i] % 8 == 0);
  return readable;
}

Tensor cudnn_ready(const Tensor& t) {
  return cudnn_readable(t) ? t : t.clone();
}

// The shapes and dtype that cuDNN's fused engines take (d up to 128 in bf16 on every GPU
// generation; a causal mask aligned to the last key). A single query (a decoding step) stays on
// the composite: it is cheap there, and each step's new key count would cost a new cuDNN plan.
bool fused_candidate(const Tensor& q, const Tensor& k, int64_t offset) {
  const int64_t d = q.size(3);
  return q.is_cuda() && q.dtype() == DType::bf16 && d % 8 == 0 && d <= 128 &&
         offset == k.size(2) - q.size(2) && q.size(2) > 1 && q.numel() > 0;
}

// Whether cuDNN made plans for these inputs; the first refusal is reported once on stderr.
bool fused_available(const Tensor& q, const Tensor& k, const Tensor& v) {
  const std::string refusal = cuda::flash_attention_refusal(q, k, v, any_requires_grad({q, k, v}));
  if (refusal.empty()) return true;
  static std::once_flag reported;
  std::call_once(reported, [&] {
    fmt::print(stderr,
               "{}: cuDNN's fused attention cannot run q {} over k {}; using the cuBLAS "
               "composite (reported once): {}\n",
               kOp, describe(q), describe(k), refusal);
  });
  return false;
}

// The output gradient in the output's layout (what the backward plan was made for; strides of
// size-1 dims do not matter).
Tensor in_layout_of(const Tensor& grad, const Tensor& out) {
  bool same = cudnn_readable(grad);
  for (int64_t i = 0; i < out.dim(); ++i) {
    same = same && (out.size(i) == 1 || grad.strides()[i] == out.strides()[i]);
  }
  if (same) return grad;
  return grad.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3});
}

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  // Written as [B, T, H, d] and returned as its [B, H, T, d] view: merging heads is then free.
  const Tensor out = Tensor::empty({B, T, H, d}, q.dtype(), q.device()).permute({0, 2, 1, 3});
  const Tensor stats = Tensor::empty({B, H, T, 1}, DType::f32, q.device());
  cuda::flash_attention_forward(out, stats, q, k, v, scale);
  record(kOp, {q, k, v}, {out},
         [q = q.detach(), k = k.detach(), v = v.detach(), out = out.detach(), stats,
          scale](const BackwardArgs& args) {
           std::vector<Tensor> grads{Tensor::empty(q.shape(), q.dtype(), q.device()),
                                     Tensor::empty(k.shape(), k.dtype(), k.device()),
                                     Tensor::empty(v.shape(), v.dtype(), v.device())};
           cuda::flash_attention_backward(grads[0], grads[1], grads[2], q, k, v, out,
                                          in_layout_of(args.grad(), out), stats, scale);
           for (size_t i = 0; i < grads.size(); ++i) {
             if (!args.needs(i)) grads[i] = Tensor();
           }
           return grads;
         });
  return out;
}

}  // namespace

Tensor causal_attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                  int64_t offset) {
  check_inputs(q, k, v, offset);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2), d = q.size(3);
  const Tensor qf = q.reshape({B * H, T, d}), kf = k.reshape({B * H, S, d});
  const Tensor scores = bmm(qf, kf.transpose(1, 2)) * (1.0 / std::sqrt(static_cast<double>(d)));
  const Tensor masked = masked_fill(scores, causal_mask(T, S, offset, q.device()), -INFINITY);
  return bmm(softmax(masked, -1), v.reshape({B * H, S, d})).view({B, H, T, d});
}

bool causal_attention_is_fused(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset) {
  check_inputs(q, k, v, offset);
  return fused_candidate(q, k, offset) &&
         fused_available(cudnn_ready(q), cudnn_ready(k), cudnn_ready(v));
}

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset) {
  check_inputs(q, k, v, offset);
  if (fused_candidate(q, k, offset)) {
    const Tensor qc = cudnn_ready(q), kc = cudnn_ready(k), vc = cudnn_ready(v);
    if (fused_available(qc, kc, vc)) return fused_attention(qc, kc, vc);
  }
  return causal_attention_composite(q, k, v, offset);
}

namespace {

// batch 2, heads 2, 4 queries over 4 keys, d 3: the training case (offset 0).
const OpRegistration kCausalAttention{
    {.name = "causal_attention",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 2, 4, 3}),
                                      random_normal(g, {2, 2, 4, 3}),
                                      random_normal(g, {2, 2, 4, 3})};
         },
     .run =
         [](const std::vector<Tensor>& in) { return causal_attention(in[0], in[1], in[2], 0); }}};

// 3 queries after 2 cached keys (offset 2 = S - T), as in generation with a KV cache.
const OpRegistration kCausalAttentionCached{
    {.name = "causal_attention_cached",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {1, 2, 3, 4}),
                                      random_normal(g, {1, 2, 5, 4}),
                                      random_normal(g, {1, 2, 5, 4})};
         },
     .run =
         [](const std::vector<Tensor>& in) { return causal_attention(in[0], in[1], in[2], 2); }}};

}  // namespace
}  // namespace dssm
