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
// Every product is one batched GEMM over (batch, head, chunk); on CUDA the second product of
// O_j and dV_j accumulates into the first one's output inside the GEMM, the masks and decays are
// kernels of their own that read small per-head tables (no broadcast tensors), and the sums of
// dQ_j and dK_j are fused with their row decay. Only q, k, v are saved; the scores and states are
// recomputed in backward.
#include <algorithm>
#include <mutex>
#include <utility>

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
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

// The per-head constants of the chunked form, on the op's device. The CPU composes elementwise
// products with broadcast tensors in the op's dtype; CUDA applies them with dedicated kernels
// (cuda/kernels_retention.hpp) from small per-head tables in the compute dtype (f32, or f64).
struct ChunkConstants {
  Tensor intra_mask;                // M_j: CPU [heads, chunks, C, C]; undefined on CUDA
  Tensor query_decay;               // Λ_j: CPU [heads, chunks, C, 1]; CUDA [heads, chunks * C]
  Tensor key_decay;                 // Γ: CPU [heads, 1, C, 1]; CUDA [heads, C]
  Tensor row_scale;                 // CUDA only: r_n, [heads, chunks * C]
  Tensor powers;                    // CUDA only: gamma^i, [heads, C]
  std::vector<double> chunk_decay;  // gamma^C per head
};

ChunkConstants chunk_constants(const RetentionDecay& decay, const Chunking& c, bool normalize,
                               DType dtype, Device device) {
  const int64_t H = c.heads, J = c.chunks, C = c.chunk;
  auto row_scale = [&](int64_t h, int64_t n) { return normalize ? decay.row_scale(h, n) : 1.0; };
  auto query_decay = [&](int64_t h, int64_t n) {
    return row_scale(h, n) * decay.power(h, static_cast<double>(n % C + 1));
  };
  auto key_decay = [&](int64_t h, int64_t i) {
    return decay.power(h, static_cast<double>(C - 1 - i));
  };
  ChunkConstants k;
  for (int64_t h = 0; h < H; ++h) k.chunk_decay.push_back(decay.power(h, static_cast<double>(C)));
  if (device.is_cuda()) {
    const DType table = dtype == DType::f64 ? DType::f64 : DType::f32;
    k.query_decay = per_head_table(H, J * C, query_decay, table, device);
    k.key_decay = per_head_table(H, C, key_decay, table, device);
    k.row_scale = per_head_table(H, J * C, row_scale, table, device);
    k.powers = per_head_table(
        H, C, [&](int64_t h, int64_t i) { return decay.power(h, static_cast<double>(i)); }, table,
        device);
    return k;
  }
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
  k.query_decay = per_head_table(H, J * C, query_decay, dtype, device).reshape({H, J, C, 1});
  k.key_decay = per_head_table(H, C, key_decay, dtype, device).reshape({H, 1, C, 1});
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

// scores [B, H, chunks, C, C] ⊙ M_j (on CUDA in place: scores is a fresh GEMM output).
Tensor masked(const Tensor& scores, const ChunkConstants& k, const Chunking& c) {
  if (!scores.is_cuda()) return scores * k.intra_mask;
  cuda::retention_chunk_mask(scores, k.row_scale, k.powers, c.heads, c.chunks);
  return scores;
}

// add + x5 with the rows of each chunk scaled by a per-row decay (`cpu_factor` on the CPU, the
// table of `period` rows per head on CUDA); add may be undefined. x5 [B, H, chunks, C, d] is
// contiguous on CUDA, and add (a fresh GEMM output) receives the result there.
Tensor scale_rows(const Tensor& x5, const Tensor& factor, int64_t period, const Tensor& add,
                  const Chunking& c) {
  if (!x5.is_cuda()) {
    const Tensor scaled = x5 * factor;
    return add.defined() ? add + scaled : scaled;
  }
  const Shape rows{c.batch, c.heads, c.padded(), x5.size(4)};
  const Tensor out = add.defined() ? add : Tensor::empty(x5.shape(), x5.dtype(), x5.device());
  cuda::retention_scale_rows(out.view(rows), x5.view(rows),
                             add.defined() ? add.view(rows) : Tensor(), factor, period);
  return out;
}
Tensor query_decayed(const Tensor& x5, const ChunkConstants& k, const Chunking& c,
                     const Tensor& add = {}) {
  return scale_rows(x5, k.query_decay, c.padded(), add, c);
}
Tensor key_decayed(const Tensor& x5, const ChunkConstants& k, const Chunking& c,
                   const Tensor& add = {}) {
  return scale_rows(x5, k.key_decay, c.chunk, add, c);
}

// Whether the GEMMs go straight to cuda::matmul (cuBLASLt, bf16 and f32): no autograd, no
// copies, no host-side message formatting per call; otherwise the matmul op.
bool direct_gemm(const Tensor& x) {
  return x.is_cuda() && x.dtype() != DType::f64;
}

// a @ b, batched over the leading dims (a, b row- or column-major views).
Tensor gemm(const Tensor& a, const Tensor& b) {
  if (!direct_gemm(a)) return matmul(a, b);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape shape = a.shape();
  shape.back() = N;
  const Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  cuda::matmul(out.view({-1, M, N}), a.reshape({-1, M, K}), b.reshape({-1, K, N}));
  return out;
}

// acc + a @ b. On CUDA (bf16, f32) the product accumulates into acc's storage inside the GEMM
// (acc is a fresh, contiguous GEMM output).
Tensor gemm_accumulate(const Tensor& acc, const Tensor& a, const Tensor& b) {
  if (!direct_gemm(acc) || !acc.is_contiguous()) return acc + matmul(a, b);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  cuda::matmul(acc.view({-1, M, N}), a.reshape({-1, M, K}), b.reshape({-1, K, N}), true);
  return acc;
}

// What forward computes and backward recomputes: the masked intra-chunk scores Q K^T ⊙ M, the
// decayed keys Γ K and the states P before each chunk.
struct ChunkStates {
  Tensor scores;
  Tensor decayed_keys;
  Tensor states;
};

ChunkStates chunk_states(const Tensor& q5, const Tensor& k5, const Tensor& v5,
                         const ChunkConstants& k, const Chunking& c) {
  ChunkStates s;
  s.scores = masked(gemm(q5, transposed(k5)), k, c);
  s.decayed_keys = key_decayed(k5, k, c);
  s.states = chunk_scan(gemm(transposed(s.decayed_keys), v5), k.chunk_decay, false);
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
  const ChunkStates s = chunk_states(q5, k5, v5, k, c);
  const Tensor decayed_queries = query_decayed(q5, k, c);
  const Tensor future = chunk_scan(gemm(transposed(decayed_queries), g5), k.chunk_decay, true);
  std::vector<Tensor> grads(3);
  if (args.needs(0) || args.needs(1)) {
    const Tensor score_grad = masked(gemm(g5, transposed(v5)), k, c);
    if (args.needs(0)) {  // dA K + Λ (G P^T)
      grads[0] =
          from_chunks(query_decayed(gemm(g5, transposed(s.states)), k, c, gemm(score_grad, k5)), c);
    }
    if (args.needs(1)) {  // dA^T Q + Γ (V R^T)
      grads[1] = from_chunks(
          key_decayed(gemm(v5, transposed(future)), k, c, gemm(transposed(score_grad), q5)), c);
    }
  }
  if (args.needs(2)) {  // (Q K^T ⊙ M)^T G + (Γ K) R
    grads[2] =
        from_chunks(gemm_accumulate(gemm(transposed(s.scores), g5), s.decayed_keys, future), c);
  }
  return grads;
}

}  // namespace

Tensor retention_chunkwise(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_size,
                           const RetentionOptions& options) {
  check_retention_inputs(q, k, v, kOp);
  DSSM_CHECK(chunk_size >= 1, kOp, "expected chunk_size >= 1, got {}", chunk_size);
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
    const ChunkStates s = chunk_states(q5, k5, v5, ck, c);
    out = from_chunks(gemm_accumulate(gemm(s.scores, v5), query_decayed(q5, ck, c), s.states), c);
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
