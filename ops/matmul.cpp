// Batched matrix product C[b] = A[b] B[b], and its backward
//   dA = dC B^T,   dB = A^T dC,
// where the transposes are views (no copies). The CPU kernel maps each matrix onto Eigen without
// copying (row-major or column-major, whichever its strides are); the CUDA kernel calls cuBLASLt.
// A matrix W shared over the batch (C[b] = W X[b] or X[b] W, shared_matmul) is read with a batch
// stride of 0, and its gradient dW = sum_b dC[b] X[b]^T (or X[b]^T dC[b]) is one GEMM per batch
// element accumulating into dW (in bf16 the running sum is rounded once per element).
#include <omp.h>
#include <Eigen/Core>

#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

// Whether a [..., R, C] operand's matrices are stored column by column (a transposed view, such
// as x.transpose(1, 2) of a contiguous x): its columns are contiguous, its rows are not.
bool stored_by_columns(const Tensor& x) {
  const bool rows_contiguous = x.strides().back() == 1 || x.size(-1) == 1;
  const bool columns_contiguous = x.strides()[x.dim() - 2] == 1 || x.size(-2) == 1;
  return columns_contiguous && !rows_contiguous;
}

// x @ y laid out like `like`: when like is stored by columns the product is computed as
// (y^T x^T)^T, so that the gradient of a transposed operand comes back transposed too and the
// ops downstream (a transposed view's consumer) need no copy.
Tensor product_laid_out_like(const Tensor& like, const Tensor& x, const Tensor& y) {
  if (stored_by_columns(like)) return bmm(y.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2);
  return bmm(x, y);
}

// A matrix operand the GEMM can read as is: one of its last two strides must be 1.
Tensor gemm_ready(const Tensor& x) {
  const int64_t rs = x.strides()[1], cs = x.strides()[2];
  const bool row_major = cs == 1 || x.size(2) == 1;
  const bool col_major = rs == 1 || x.size(1) == 1;
  if ((row_major && rs >= std::max<int64_t>(x.size(2), 1)) ||
      (col_major && cs >= std::max<int64_t>(x.size(1), 1))) {
    return x;
  }
  return x.contiguous();
}

template <typename T, int Order>
using MatrixMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, 0,
                             Eigen::OuterStride<>>;

// Calls fn(map) with an Eigen view of matrix `index` of the [B, R, C] operand x.
template <typename T, typename Fn>
void with_matrix(const Tensor& x, const T* base, int64_t index, Fn&& fn) {
  const T* p = base + index * x.strides()[0];
  const int64_t rows = x.size(1), cols = x.size(2);
  if (x.strides()[2] == 1 || cols == 1) {
    fn(MatrixMap<T, Eigen::RowMajor>(
        p, rows, cols, Eigen::OuterStride<>(std::max<int64_t>(x.strides()[1], cols))));
  } else {
    fn(MatrixMap<T, Eigen::ColMajor>(
        p, rows, cols, Eigen::OuterStride<>(std::max<int64_t>(x.strides()[2], rows))));
  }
}

template <typename T>
void cpu_gemm_typed(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  auto gemm = [&](int64_t i) {
    Eigen::Map<RowMatrix> c(po + i * M * N, M, N);
    with_matrix(a, pa, i, [&](const auto& ma) {
      with_matrix(b, pb, i, [&](const auto& mb) {
        if (accumulate) {
          c.noalias() += ma * mb;
        } else {
          c.noalias() = ma * mb;
        }
      });
    });
  };
  // Many small GEMMs: one per thread at a time (Eigen runs single-threaded inside a parallel
  // region), instead of each one split over the threads by Eigen, whose fork/join per small
  // GEMM costs more than the GEMM (16 x 256^3: 2-20 GFLOP/s against ~40). Batches that do not
  // spread evenly, and large matrices, keep Eigen's own threading.
  const int threads = omp_get_max_threads();
  const bool per_matrix = threads > 1 && (batch % threads == 0 || batch >= 4 * threads) &&
                          M * N * K <= (int64_t{1} << 27);
#pragma omp parallel for schedule(static) if (per_matrix)
  for (int64_t i = 0; i < batch; ++i) gemm(i);
}

void cpu_gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  switch (out.dtype()) {
    case DType::f32:
      return cpu_gemm_typed<float>(out, a, b, accumulate);
    case DType::f64:
      return cpu_gemm_typed<double>(out, a, b, accumulate);
    case DType::bf16: {  // bf16 on the CPU: compute in f32
      Tensor out32 = accumulate ? out.to(DType::f32) : Tensor::empty(out.shape(), DType::f32);
      cpu_gemm_typed<float>(out32, a.to(DType::f32), b.to(DType::f32), accumulate);
      out.copy_from(out32);
      return;
    }
    default:
      fail("matmul", "expected a floating dtype, got {}", dtype_name(out.dtype()));
  }
}

// out = a @ b, or out += a @ b with `accumulate`, for [B, M, K] @ [B, K, N] -> [B, M, N]
// operands the GEMM can read (gemm_ready) and a contiguous out; records nothing.
void gemm(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  if (out.numel() == 0) return;
  if (a.size(2) == 0) {  // an empty sum
    if (!accumulate) out.fill_(0.0);
  } else if (out.is_cuda()) {
    cuda::matmul(out, a, b, accumulate);
  } else {
    cpu_gemm(out, a, b, accumulate);
  }
}

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  DSSM_CHECK(a.dtype() == b.dtype(), op, "dtype mismatch: {} vs {}", describe(a), describe(b));
  DSSM_CHECK(a.device() == b.device(), op, "device mismatch: {} vs {}", describe(a), describe(b));
}

// sum_i x[i] @ y[i] over the batch, an [M, N] matrix: the gradient of a matrix shared over the
// batch, summed by the GEMM's own accumulation (no [B, M, N] of partial products). Laid out like
// `like`, as product_laid_out_like.
Tensor batch_summed_product_laid_out_like(const Tensor& like, const Tensor& x, const Tensor& y) {
  if (stored_by_columns(like)) {
    return batch_summed_product_laid_out_like(like.transpose(0, 1), y.transpose(1, 2),
                                              x.transpose(1, 2))
        .transpose(0, 1);
  }
  const Tensor xs = gemm_ready(x), ys = gemm_ready(y);
  const Tensor out = Tensor::empty({1, xs.size(1), ys.size(2)}, xs.dtype(), xs.device());
  if (xs.size(0) == 0) out.fill_(0.0);
  for (int64_t i = 0; i < xs.size(0); ++i) {
    gemm(out, xs.narrow(0, i, 1), ys.narrow(0, i, 1), /*accumulate=*/i > 0);
  }
  return out.squeeze(0);
}

// a @ b with one operand a matrix shared over the other's batch: [M, K] @ [B, K, N] or
// [B, M, K] @ [K, N] -> [B, M, N]. The GEMM reads the shared matrix with a batch stride of 0, so
// the batched operand is read in its own layout (a transposed view is not copied), and its
// gradient comes back in that layout.
Tensor shared_matmul(const Tensor& a_in, const Tensor& b_in) {
  check_operands("matmul", a_in, b_in);
  const bool shared_left = a_in.dim() == 2;
  const int64_t batch = shared_left ? b_in.size(0) : a_in.size(0);
  auto along_batch = [batch](const Tensor& m) {
    return gemm_ready(m.detach().unsqueeze(0)).expand({batch, m.size(0), m.size(1)});
  };
  const Tensor a = shared_left ? along_batch(a_in) : gemm_ready(a_in.detach());
  const Tensor b = shared_left ? gemm_ready(b_in.detach()) : along_batch(b_in);
  const Tensor out = Tensor::empty({batch, a.size(1), b.size(2)}, a.dtype(), a.device());
  gemm(out, a, b, false);
  record(
      "matmul", {a_in, b_in}, {out},
      [a, b, shared_left, shared = (shared_left ? a_in : b_in).detach()](const BackwardArgs& args) {
        const Tensor& g = args.grad();
        Tensor da, db;
        if (args.needs(0)) {
          da = shared_left ? batch_summed_product_laid_out_like(shared, g, b.transpose(1, 2))
                           : product_laid_out_like(a, g, b.transpose(1, 2));
        }
        if (args.needs(1)) {
          db = shared_left ? product_laid_out_like(b, a.transpose(1, 2), g)
                           : batch_summed_product_laid_out_like(shared, a.transpose(1, 2), g);
        }
        return std::vector<Tensor>{da, db};
      });
  return out;
}

}  // namespace

Tensor bmm(const Tensor& a_in, const Tensor& b_in) {
  DSSM_CHECK(a_in.dim() == 3 && b_in.dim() == 3, "bmm", "expected 3-D operands, got {} and {}",
             describe(a_in), describe(b_in));
  DSSM_CHECK(a_in.size(0) == b_in.size(0) && a_in.size(2) == b_in.size(1), "bmm",
             "shapes {} and {} do not chain ([B, M, K] @ [B, K, N])", shape_str(a_in.shape()),
             shape_str(b_in.shape()));
  check_operands("bmm", a_in, b_in);
  const Tensor a = gemm_ready(a_in.detach()), b = gemm_ready(b_in.detach());
  Tensor out = Tensor::empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  gemm(out, a, b, false);
  record("bmm", {a_in, b_in}, {out}, [a, b](const BackwardArgs& args) {
    const Tensor& g = args.grad();
    return std::vector<Tensor>{
        args.needs(0) ? product_laid_out_like(a, g, b.transpose(1, 2)) : Tensor(),
        args.needs(1) ? product_laid_out_like(b, a.transpose(1, 2), g) : Tensor()};
  });
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  DSSM_CHECK(a.dim() >= 1 && b.dim() >= 2, "matmul", "unsupported operands {} and {}", describe(a),
             describe(b));
  const int64_t K = a.size(-1);
  DSSM_CHECK(b.size(-2) == K, "matmul", "inner dimensions differ: {} @ {}", shape_str(a.shape()),
             shape_str(b.shape()));
  if (a.dim() == 2 && b.dim() > 2) {  // [M, K] @ [..., K, N]: a weight shared over b's batch
    const Tensor b3 = b.dim() == 3 ? b : b.reshape({-1, K, b.size(-1)});
    Shape out_shape(b.shape().begin(), b.shape().end() - 2);
    out_shape.insert(out_shape.end(), {a.size(0), b.size(-1)});
    return shared_matmul(a, b3).reshape(out_shape);
  }
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(b.size(-1));
  if (b.dim() == 2) {  // a weight shared over every leading dim of a
    // Matrices stored by columns (a transposed view) share the weight through a batch stride of
    // 0, as a would be copied to make its rows one [rows, K] matrix; otherwise one big GEMM.
    if (a.dim() == 3 && stored_by_columns(a)) return shared_matmul(a, b);
    const Tensor rows = a.reshape({1, -1, K});
    return bmm(rows, b.unsqueeze(0)).reshape(out_shape);
  }
  DSSM_CHECK(a.dim() == b.dim() && Shape(a.shape().begin(), a.shape().end() - 2) ==
                                       Shape(b.shape().begin(), b.shape().end() - 2),
             "matmul", "batch dims differ: {} @ {}", shape_str(a.shape()), shape_str(b.shape()));
  const Tensor a3 = a.reshape({-1, a.size(-2), K});
  const Tensor b3 = b.reshape({-1, K, b.size(-1)});
  return bmm(a3, b3).reshape(out_shape);
}

namespace {

const OpRegistration kMatmul{
    {.name = "matmul",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3, 4}), random_normal(g, {4, 5})};
         },
     .run = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }}};
// Both operands transposed views: exercises the no-copy column-major path.
const OpRegistration kBmmTransposed{
    {.name = "bmm_transposed",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 4, 3}), random_normal(g, {2, 5, 4})};
         },
     .run =
         [](const std::vector<Tensor>& in) {
           return bmm(in[0].transpose(1, 2), in[1].transpose(1, 2));
         }}};
// Weights shared over a batch of transposed views, from the left (W x^T) and from the right
// (y^T V^T, as nn::Linear): the batch-stride-0 paths, whose gradients come back in the
// operands' layouts.
const OpRegistration kMatmulSharedWeight{
    {.name = "matmul_shared_weight",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 4, 3}), random_normal(g, {6, 3}),
                                      random_normal(g, {5, 6})};
         },
     .run =
         [](const std::vector<Tensor>& in) {
           const Tensor y = matmul(in[1], in[0].transpose(1, 2));    // [2, 6, 4]
           return matmul(y.transpose(1, 2), in[2].transpose(0, 1));  // [2, 4, 5]
         }}};

}  // namespace
}  // namespace dssm
