// The chunkwise form of retention (RetNet Eq. 7; DenseRetNet Eq. 22-23). The sequence is cut
// into chunks of C tokens (the last one zero-padded). For chunk j with queries Q_j, keys K_j,
// values V_j (C rows each) and local positions i = 0 .. C-1:
//   O_j = (Q_j K_j^T ⊙ M_j) V_j  +  (Λ_j Q_j) P_j                   intra-chunk + inter-chunk
//   U_j = (Γ K_j)^T V_j,   P_0 = 0,   P_{j+1} = gamma^C P_j + U_j    (the state before chunk j)
// with M_j[i, i'] = r_n gamma^(i-i') for i >= i' (else 0), Λ_j = diag(r_n gamma^(i+1)),
// Γ = diag(gamma^(C-1-i)), and r_n the row normalisation at n = j C + i (1 without it): it scales
// whole output rows, so it is folded into M_j and Λ_j.
//
// Backward, from G_j = dO_j (the recurrence over P runs in reverse):
//   dA_j = (G_j V_j^T) ⊙ M_j,   dP_j = (Λ_j Q_j)^T G_j,
//   R_j = sum_{j' > j} gamma^(C (j'-j-1)) dP_j'     (R_{J-1} = 0, R_j = gamma^C R_{j+1} + dP_{j+1})
//   dQ_j = dA_j K_j + Λ_j G_j P_j^T
//   dK_j = dA_j^T Q_j + Γ V_j R_j^T
//   dV_j = (Q_j K_j^T ⊙ M_j)^T G_j + (Γ K_j) R_j
// Every product is one batched GEMM over (batch, head, chunk). Only q, k, v are saved; the
// scores and states are recomputed in backward.
#include <algorithm>
#include <mutex>
#include <utility>

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "cuda/kernels_retention.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/retention_common.hpp"

namespace dssm {
namespace {

constexpr const char* kOp = "retention_chunkwise";

struct Chunking {
  int64_t batch, heads, length, chunk, chunks;
  int64_t padded() const { return chunk * chunks; }
};

// The per-head constants of the chunked form, in the op's dtype and on its device.
struct ChunkConstants {
  Tensor intra_mask;                // M_j, [heads, chunks, C, C]
  Tensor query_decay;               // Λ_j, [heads, chunks, C, 1]
  Tensor key_decay;                 // Γ, [heads, 1, C, 1]
  std::vector<double> chunk_decay;  // gamma^C per head
};

ChunkConstants chunk_constants(const RetentionDecay& decay, const Chunking& c, bool normalize,
                               DType dtype, Device device) {
  const int64_t H = c.heads, J = c.chunks, C = c.chunk;
  auto row_scale = [&](int64_t h, int64_t n) { return normalize ? decay.row_scale(h, n) : 1.0; };
  ChunkConstants k;
  k.intra_mask = per_head_table(
                     H, J * C * C,
                     [&](int64_t h, int64_t at) {
                       const int64_t j = at / (C * C), i = at / C % C, i_key = at % C;
                       return i >= i_key ? row_scale(h, j * C + i) *
                                               decay.power(h, static_cast<double>(i - i_key))
                                         : 0.0;
                     },
                     dtype, device)
                     .reshape({H, J, C, C});
  k.query_decay = per_head_table(
                      H, J * C,
                      [&](int64_t h, int64_t n) {
                        return row_scale(h, n) * decay.power(h, static_cast<double>(n % C + 1));
                      },
                      dtype, device)
                      .reshape({H, J, C, 1});
  k.key_decay =
      per_head_table(
          H, C,
          [&](int64_t h, int64_t i) { return decay.power(h, static_cast<double>(C - 1 - i)); },
          dtype, device)
          .reshape({H, 1, C, 1});
  for (int64_t h = 0; h < H; ++h) k.chunk_decay.push_back(decay.power(h, static_cast<double>(C)));
  return k;
}

// The constants depend only on these, and a model passes the same ones in every layer and every
// training step: they are built once (on the host, in float64) and kept, a few of them at most.
ChunkConstants cached_chunk_constants(const RetentionDecay& decay, const Chunking& c,
                                      bool normalize, DType dtype, Device device) {
  struct Key {
    std::vector<double> gammas;
    int64_t chunk, chunks;
    bool normalize;
    DType dtype;
    Device device;
    bool operator==(const Key&) const = default;
  };
  static std::mutex mutex;
  static std::vector<std::pair<Key, ChunkConstants>> cache;
  const Key key{decay.gammas, c.chunk, c.chunks, normalize, dtype, device};
  const std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [cached_key, constants] : cache) {
    if (cached_key == key) return constants;
  }
  if (cache.size() >= 8) cache.clear();
  cache.emplace_back(key, chunk_constants(decay, c, normalize, dtype, device));
  return cache.back().second;
}

// [B, H, L, d] -> [B, H, chunks, C, d], contiguous, zeros past the length.
Tensor to_chunks(const Tensor& x, const Chunking& c) {
  const int64_t d = x.size(3);
  if (c.padded() == c.length)
    return x.contiguous().reshape({c.batch, c.heads, c.chunks, c.chunk, d});
  Tensor padded = Tensor::zeros({c.batch, c.heads, c.padded(), d}, x.dtype(), x.device());
  padded.narrow(2, 0, c.length).copy_from(x);
  return padded.reshape({c.batch, c.heads, c.chunks, c.chunk, d});
}

// [B, H, chunks, C, d] -> [B, H, L, d], contiguous.
Tensor from_chunks(const Tensor& x, const Chunking& c) {
  return x.reshape({c.batch, c.heads, c.padded(), x.size(4)}).narrow(2, 0, c.length).contiguous();
}

Tensor transposed(const Tensor& x) {
  return x.transpose(-1, -2);
}

// The exclusive decayed scan over chunks of states [B, H, chunks, dk, dv] (see
// cuda/kernels_retention.hpp): forward gives P from U, reverse gives R from dP.
Tensor chunk_scan(const Tensor& in, const std::vector<double>& decay, bool reverse) {
  Tensor out = Tensor::empty(in.shape(), in.dtype(), in.device());
  if (out.numel() == 0) return out;
  if (in.is_cuda()) {
    cuda::retention_chunk_scan(out, in, decay, reverse);
    return out;
  }
  const int64_t B = in.size(0), H = in.size(1), J = in.size(2), inner = in.size(3) * in.size(4);
  dispatch_floating(in.dtype(), kOp, [&]<typename T>() {
    using Acc = compute_t<T>;
    const T* src = in.data<T>();
    T* dst = out.data<T>();
#pragma omp parallel for collapse(2) if (B * H * J * inner > 32768)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const Acc a = static_cast<Acc>(decay[h]);
        const int64_t base = (b * H + h) * J * inner;
        std::vector<Acc> acc(static_cast<size_t>(inner), Acc(0));
        for (int64_t step = 0; step < J; ++step) {
          const int64_t j = reverse ? J - 1 - step : step;
          const T* u = src + base + j * inner;
          T* p = dst + base + j * inner;
          for (int64_t e = 0; e < inner; ++e) {
            p[e] = static_cast<T>(acc[e]);
            acc[e] = a * acc[e] + static_cast<Acc>(u[e]);
          }
        }
      }
    }
  });
  return out;
}

// What forward computes and backward recomputes: the masked intra-chunk scores Q K^T ⊙ M, the
// decayed keys Γ K and the states P before each chunk.
struct ChunkStates {
  Tensor scores;
  Tensor decayed_keys;
  Tensor states;
};

ChunkStates chunk_states(const Tensor& q5, const Tensor& k5, const Tensor& v5,
                         const ChunkConstants& k) {
  ChunkStates s;
  s.scores = matmul(q5, transposed(k5)) * k.intra_mask;
  s.decayed_keys = k5 * k.key_decay;
  s.states = chunk_scan(matmul(transposed(s.decayed_keys), v5), k.chunk_decay, false);
  return s;
}

struct SavedForBackward {
  Tensor q, k, v;
  Chunking chunking;
  ChunkConstants constants;
};

std::vector<Tensor> chunkwise_backward(const SavedForBackward& saved, const BackwardArgs& args) {
  const Chunking& c = saved.chunking;
  const ChunkConstants& k = saved.constants;
  const Tensor q5 = to_chunks(saved.q, c), k5 = to_chunks(saved.k, c), v5 = to_chunks(saved.v, c);
  const Tensor g5 = to_chunks(args.grad(), c);
  const ChunkStates s = chunk_states(q5, k5, v5, k);
  const Tensor decayed_queries = q5 * k.query_decay;
  const Tensor future = chunk_scan(matmul(transposed(decayed_queries), g5), k.chunk_decay, true);
  std::vector<Tensor> grads(3);
  if (args.needs(0) || args.needs(1)) {
    const Tensor score_grad = matmul(g5, transposed(v5)) * k.intra_mask;
    if (args.needs(0)) {
      grads[0] =
          from_chunks(matmul(score_grad, k5) + matmul(g5, transposed(s.states)) * k.query_decay, c);
    }
    if (args.needs(1)) {
      grads[1] = from_chunks(
          matmul(transposed(score_grad), q5) + matmul(v5, transposed(future)) * k.key_decay, c);
    }
  }
  if (args.needs(2)) {
    grads[2] = from_chunks(matmul(transposed(s.scores), g5) + matmul(s.decayed_keys, future), c);
  }
  return grads;
}

}  // namespace

Tensor retention_chunkwise(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_size,
                           const RetentionOptions& options) {
  check_retention_inputs(q, k, v, kOp);
  check(chunk_size >= 1, kOp, "expected chunk_size >= 1, got {}", chunk_size);
  const RetentionDecay decay = retention_decay(options, q.size(1), kOp);
  const int64_t length = q.size(2);
  if (q.numel() == 0 || v.numel() == 0) {
    return Tensor::zeros({q.size(0), q.size(1), length, v.size(3)}, v.dtype(), v.device());
  }
  const int64_t chunk = std::min(chunk_size, length);
  const Chunking c{q.size(0), q.size(1), length, chunk, (length + chunk - 1) / chunk};
  SavedForBackward saved{
      q.detach(), k.detach(), v.detach(), c,
      cached_chunk_constants(decay, c, options.normalize, q.dtype(), q.device())};
  Tensor out;
  {
    NoGradGuard no_grad;
    const ChunkConstants& ck = saved.constants;
    const Tensor q5 = to_chunks(saved.q, c), k5 = to_chunks(saved.k, c), v5 = to_chunks(saved.v, c);
    const ChunkStates s = chunk_states(q5, k5, v5, ck);
    out = from_chunks(matmul(s.scores, v5) + matmul(q5 * ck.query_decay, s.states), c);
  }
  record(kOp, {q, k, v}, {out}, [saved = std::move(saved)](const BackwardArgs& args) {
    return chunkwise_backward(saved, args);
  });
  return out;
}

namespace {

// batch 2, heads 2, length 7, dk 4, dv 6, chunks of 3 (the last one padded).
const OpRegistration kRetentionChunkwise{{.name = "retention_chunkwise",
                                          .make_inputs =
                                              [](Generator& g) {
                                                return std::vector<Tensor>{
                                                    random_normal(g, {2, 2, 7, 4}),
                                                    random_normal(g, {2, 2, 7, 4}),
                                                    random_normal(g, {2, 2, 7, 6})};
                                              },
                                          .run =
                                              [](const std::vector<Tensor>& in) {
                                                return retention_chunkwise(in[0], in[1], in[2], 3);
                                              }}};

}  // namespace
}  // namespace dssm
