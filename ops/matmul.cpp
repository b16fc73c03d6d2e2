// Batched matrix product C[b] = A[b] B[b], and its backward
//   dA = dC B^T,   dB = A^T dC,
// where the transposes are views (no copies). The CPU kernel maps each matrix onto Eigen without
// copying (row-major or column-major, whichever its strides are); the CUDA kernel calls cuBLASLt.
#include <omp.h>
#include <Eigen/Core>

#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

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
void cpu_gemm_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  auto gemm = [&](int64_t i) {
    Eigen::Map<RowMatrix> c(po + i * M * N, M, N);
    with_matrix(a, pa, i, [&](const auto& ma) {
      with_matrix(b, pb, i, [&](const auto& mb) { c.noalias() = ma * mb; });
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

void cpu_gemm(const Tensor& out, const Tensor& a, const Tensor& b) {
  switch (out.dtype()) {
    case DType::f32:
      return cpu_gemm_typed<float>(out, a, b);
    case DType::f64:
      return cpu_gemm_typed<double>(out, a, b);
    case DType::bf16: {  // bf16 on the CPU: compute in f32
      Tensor out32 = Tensor::empty(out.shape(), DType::f32);
      cpu_gemm_typed<float>(out32, a.to(DType::f32), b.to(DType::f32));
      out.copy_from(out32);
      return;
    }
    default:
      fail("matmul", "expected a floating dtype, got {}", dtype_name(out.dtype()));
  }
}

}  // namespace

Tensor bmm(const Tensor& a_in, const Tensor& b_in) {
  DSSM_CHECK(a_in.dim() == 3 && b_in.dim() == 3, "bmm", "expected 3-D operands, got {} and {}",
             describe(a_in), describe(b_in));
  DSSM_CHECK(a_in.size(0) == b_in.size(0) && a_in.size(2) == b_in.size(1), "bmm",
             "shapes {} and {} do not chain ([B, M, K] @ [B, K, N])", shape_str(a_in.shape()),
             shape_str(b_in.shape()));
  DSSM_CHECK(a_in.dtype() == b_in.dtype(), "bmm", "dtype mismatch: {} vs {}", describe(a_in),
             describe(b_in));
  DSSM_CHECK(a_in.device() == b_in.device(), "bmm", "device mismatch: {} vs {}", describe(a_in),
             describe(b_in));
  const Tensor a = gemm_ready(a_in.detach()), b = gemm_ready(b_in.detach());
  Tensor out = Tensor::empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  if (out.numel() > 0) {
    if (a.size(2) == 0) {
      out.fill_(0.0);
    } else if (out.is_cuda()) {
      cuda::matmul(out, a, b);
    } else {
      cpu_gemm(out, a, b);
    }
  }
  record("bmm", {a_in, b_in}, {out}, [a, b](const BackwardArgs& args) {
    const Tensor& g = args.grad();
    return std::vector<Tensor>{args.needs(0) ? bmm(g, b.transpose(1, 2)) : Tensor(),
                               args.needs(1) ? bmm(a.transpose(1, 2), g) : Tensor()};
  });
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  DSSM_CHECK(a.dim() >= 1 && b.dim() >= 2, "matmul", "unsupported operands {} and {}", describe(a),
             describe(b));
  const int64_t K = a.size(-1);
  DSSM_CHECK(b.size(-2) == K, "matmul", "inner dimensions differ: {} @ {}", shape_str(a.shape()),
             shape_str(b.shape()));
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(b.size(-1));
  if (b.dim() == 2) {  // a weight shared over every leading dim of a: one big GEMM
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

}  // namespace
}  // namespace dssm
