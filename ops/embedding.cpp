// Token embedding, a table lookup:   out[p, :] = W[ids[p], :]
// Backward, a scatter-add:           dW[v, :] = sum over the positions p with ids[p] = v of g[p, :]
// (an id that appears several times collects all of its gradients).
#include <omp.h>

#include <cstring>

#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/embedding.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"

namespace dssm {
namespace {

void cpu_embedding_forward(const Tensor& out, const Tensor& weight, const Tensor& ids) {
  const int64_t n = ids.numel(), dim = weight.size(1);
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(weight.dtype());
  const auto* table = static_cast<const char*>(weight.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  dispatch_index(ids.dtype(), "embedding", [&]<typename I>() {
    const I* idx = ids.data<I>();
#pragma omp parallel for if (n * dim > 32768)
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(dst + i * row_bytes, table + idx[i] * row_bytes, row_bytes);
    }
  });
}

// Race-free without atomics: each thread owns a band of the D columns and walks every id.
void cpu_embedding_backward(const Tensor& grad_weight, const Tensor& grad_out, const Tensor& ids) {
  const int64_t n = ids.numel(), dim = grad_weight.size(1);
  dispatch_floating(grad_out.dtype(), "embedding backward", [&]<typename T>() {
    using C = compute_t<T>;
    const T* g = grad_out.data<T>();
    C* acc = grad_weight.data<C>();
    dispatch_index(ids.dtype(), "embedding backward", [&]<typename I>() {
      const I* idx = ids.data<I>();
#pragma omp parallel if (n * dim > 32768)
      {
        const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t begin = dim * t / threads, end = dim * (t + 1) / threads;
        for (int64_t i = 0; i < n; ++i) {
          C* dst = acc + idx[i] * dim;
          const T* src = g + i * dim;
          for (int64_t j = begin; j < end; ++j) dst[j] += static_cast<C>(src[j]);
        }
      }
    });
  });
}

}  // namespace

Tensor embedding(const Tensor& weight_in, const Tensor& ids_in) {
  DSSM_CHECK(weight_in.dim() == 2 && is_floating(weight_in.dtype()), "embedding",
             "expected a floating weight [V, D], got {}", describe(weight_in));
  DSSM_CHECK(ids_in.dtype() == DType::i32 || ids_in.dtype() == DType::i64, "embedding",
             "expected i32 or i64 ids, got {}", describe(ids_in));
  DSSM_CHECK(ids_in.device() == weight_in.device(), "embedding",
             "device mismatch: weight {} vs ids {}", describe(weight_in), describe(ids_in));
  const int64_t vocab = weight_in.size(0), dim = weight_in.size(1);
  const IndexScan scan = scan_indices(ids_in, vocab);
  DSSM_CHECK(scan.first_bad < 0, "embedding",
             "id {} at position {} of ids {} is outside [0, {}) (V = the rows of weight {})",
             scan.bad_value, position_str(ids_in.shape(), scan.first_bad), describe(ids_in), vocab,
             describe(weight_in));
  const Tensor weight = weight_in.detach().contiguous(), ids = ids_in.contiguous();
  Shape shape = ids.shape();
  shape.push_back(dim);
  Tensor out = Tensor::empty(shape, weight.dtype(), weight.device());
  if (out.numel() > 0) {
    if (out.is_cuda()) {
      cuda::embedding_forward(out, weight, ids);
    } else {
      cpu_embedding_forward(out, weight, ids);
    }
  }
  record("embedding", {weight_in}, {out}, [ids, vocab, dim](const BackwardArgs& args) {
    const Tensor g = args.grad().contiguous();
    // Accumulated in the compute type (f32 for bf16), then converted once.
    Tensor acc = Tensor::zeros({vocab, dim}, compute_dtype(g.dtype()), g.device());
    if (g.numel() > 0) {
      if (g.is_cuda()) {
        cuda::embedding_backward(acc, g, ids);
      } else {
        cpu_embedding_backward(acc, g, ids);
      }
    }
    return std::vector<Tensor>{acc.to(g.dtype())};
  });
  return out;
}

namespace {

const OpRegistration kEmbedding{
    {.name = "embedding",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {5, 3}),
                                      Tensor::from_vector<int64_t>({4, 1, 4, 0, 1, 4}, {2, 3})};
         },
     .run = [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); }}};

}  // namespace
}  // namespace dssm
