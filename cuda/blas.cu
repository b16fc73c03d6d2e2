// cuda::matmul (cuda/kernels.hpp): out[b] = a[b] @ b[b] on cuBLAS, for [B, M, K] @ [B, K, N] with
// row- or column-major operands and a contiguous [B, M, N] output; with `accumulate` the product
// is added to what out holds (beta = 1: the chunkwise retention sums two products this way).
//   bf16: cuBLASLt, f32 accumulation;  f32: cuBLASLt, exact f32 or TF32 (set_allow_tf32);
//   f64: cublasDgemmStridedBatched (gradcheck runs in f64).
//
// cuBLAS is column-major. Our row-major out [M, N] is, read column-major, out^T [N, M], and
// out^T = b^T a^T: so cuBLAS is asked for an N x M product with its first operand b and its
// second a. A row-major operand read column-major is already its own transpose (no op), a
// column-major one (a transposed view) is passed with op T. Nothing is copied. A batch stride of
// 0 shares one matrix across the batch.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <fmt/format.h>

#include <array>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "cuda/backend.hpp"
#include "cuda/blas.hpp"
#include "cuda/common.cuh"
#include "cuda/kernels.hpp"

namespace dssm::cuda {
namespace {

void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(fmt::format("{}: failed at {}:{}: {} ({})", call, file, line,
                          cublasGetStatusName(status), cublasGetStatusString(status)));
}
#define DSSM_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)

constexpr int kMaxDevices = 16;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what cuBLASLt suggests for Hopper

// One cuBLAS handle, one cuBLASLt handle and one workspace per device, made on first use.
struct DeviceBlas {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
};

DeviceBlas& device_blas() {
  static std::array<DeviceBlas, kMaxDevices> per_device;
  static std::array<std::once_flag, kMaxDevices> created;
  int device = 0;
  DSSM_CUDA_CHECK(cudaGetDevice(&device));
  DSSM_CHECK(device < kMaxDevices, "cublas", "device index {} beyond the supported {}", device,
             kMaxDevices);
  DeviceBlas& h = per_device[device];
  std::call_once(created[device], [&] {
    DSSM_CUBLAS_CHECK(cublasCreate(&h.blas));
    DSSM_CUBLAS_CHECK(cublasSetStream(h.blas, current_stream()));
    DSSM_CUBLAS_CHECK(cublasLtCreate(&h.lt));
    DSSM_CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspaceBytes));
  });
  return h;
}

bool g_allow_tf32 = false;

// One GEMM operand as cuBLAS sees it: a column-major stored matrix (rows x cols, leading
// dimension ld) used as is (CUBLAS_OP_N) or transposed (CUBLAS_OP_T).
struct Operand {
  const void* data;
  cublasOperation_t op;
  int64_t rows, cols, ld, batch_stride;
};

// The [B, R, C] tensor x, as the operand x^T of the swapped product (see the file comment).
Operand transposed_operand(const Tensor& x, const char* name) {
  const int64_t R = x.size(1), C = x.size(2), rs = x.strides()[1], cs = x.strides()[2];
  const int64_t batch_stride = x.size(0) == 1 ? 0 : x.strides()[0];
  if ((cs == 1 || C == 1) && rs >= std::max<int64_t>(C, 1)) {  // row-major: x^T column-major
    return {x.raw_data(), CUBLAS_OP_N, C, R, rs, batch_stride};
  }
  if ((rs == 1 || R == 1) && cs >= std::max<int64_t>(R, 1)) {  // column-major: x, transposed
    return {x.raw_data(), CUBLAS_OP_T, R, C, cs, batch_stride};
  }
  fail("matmul", "operand {} {} with strides {} is neither row- nor column-major", name,
       describe(x), shape_str(x.strides()));
}

// The largest power of two (up to 256) dividing the address: cuBLASLt picks kernels by it.
uint32_t alignment_of(const void* p) {
  uint32_t alignment = 256;
  while (alignment > 1 && reinterpret_cast<uintptr_t>(p) % alignment != 0) alignment /= 2;
  return alignment;
}

// Everything the choice of a cuBLASLt algorithm depends on.
using GemmKey = std::tuple<int, int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, uint32_t, uint32_t, uint32_t>;

// The cuBLASLt descriptors and the chosen algorithm of one GEMM configuration: made on its first
// call, then reused, so that a training step pays no per-call set-up.
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algorithm{};
  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void set_layout(cublasLtMatrixLayout_t* layout, cudaDataType_t type, int64_t rows, int64_t cols,
                int64_t ld, int32_t batch, int64_t batch_stride) {
  DSSM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(layout, type, rows, cols, ld));
  DSSM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                     &batch, sizeof batch));
  DSSM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      *layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof batch_stride));
}

// Asks cuBLASLt's heuristic for the best algorithm given the operands' alignments.
cublasLtMatmulAlgo_t choose_algorithm(cublasLtHandle_t lt, const LtPlan& plan,
                                      const uint32_t (&alignments)[3], const char* what) {
  cublasLtMatmulPreference_t preference = nullptr;
  DSSM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const size_t workspace = kWorkspaceBytes;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
      preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  const cublasLtMatmulPreferenceAttributes_t attributes[] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && status == CUBLAS_STATUS_SUCCESS; ++i) {
    const uint32_t value = alignments[std::min(i, 2)];  // D is C
    status = cublasLtMatmulPreferenceSetAttribute(preference, attributes[i], &value, sizeof value);
  }
  cublasLtMatmulHeuristicResult_t heuristic{};
  int returned = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(lt, plan.op, plan.a, plan.b, plan.c, plan.c, preference,
                                            1, &heuristic, &returned);
  }
  cublasLtMatmulPreferenceDestroy(preference);
  DSSM_CUBLAS_CHECK(status);
  DSSM_CHECK(returned > 0, "matmul", "cuBLASLt has no algorithm for {}", what);
  return heuristic.algo;
}

// bf16 and f32 through cuBLASLt: out^T (m x n) = op(first) op(second), f32 accumulation.
void lt_gemm(const Tensor& out, const Operand& first, const Operand& second, int64_t m, int64_t n,
             int64_t k, int32_t batch, float beta) {
  const bool bf16 = out.dtype() == DType::bf16;
  const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const bool tf32 = !bf16 && g_allow_tf32;
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  DeviceBlas& h = device_blas();
  const uint32_t alignments[3] = {alignment_of(first.data), alignment_of(second.data),
                                  alignment_of(out.raw_data())};
  int device = 0;
  DSSM_CUDA_CHECK(cudaGetDevice(&device));
  const int kind = static_cast<int>(compute) * 2 + bf16;
  const GemmKey key = std::make_tuple(device, kind, first.op, second.op, m, n, k, first.ld,
                                      second.ld, first.batch_stride, second.batch_stride, batch,
                                      alignments[0], alignments[1], alignments[2]);

  // Plans live until the process ends (never destroyed: they may outlive the CUDA context).
  static std::mutex mutex;
  static auto* plans = new std::map<GemmKey, std::unique_ptr<LtPlan>>();
  std::unique_lock lock(mutex);
  std::unique_ptr<LtPlan>& slot = (*plans)[key];
  if (!slot) {
    auto plan = std::make_unique<LtPlan>();
    DSSM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, compute, CUDA_R_32F));
    DSSM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                     &first.op, sizeof first.op));
    DSSM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                     &second.op, sizeof second.op));
    set_layout(&plan->a, type, first.rows, first.cols, first.ld, batch, first.batch_stride);
    set_layout(&plan->b, type, second.rows, second.cols, second.ld, batch, second.batch_stride);
    set_layout(&plan->c, type, m, n, m, batch, m * n);
    const std::string what = fmt::format("{} [{}] {}x{}x{} (batch {})", dtype_name(out.dtype()),
                                         tf32 ? "tf32" : "f32 accumulate", m, n, k, batch);
    plan->algorithm = choose_algorithm(h.lt, *plan, alignments, what.c_str());
    slot = std::move(plan);
  }
  const LtPlan& plan = *slot;
  lock.unlock();

  const float alpha = 1.0f;
  DSSM_CUBLAS_CHECK(cublasLtMatmul(
      h.lt, plan.op, &alpha, first.data, plan.a, second.data, plan.b, &beta, out.raw_data(), plan.c,
      out.raw_data(), plan.c, &plan.algorithm, h.workspace, kWorkspaceBytes, current_stream()));
}

int as_int(int64_t value, const char* what) {
  DSSM_CHECK(value <= std::numeric_limits<int>::max(), "matmul",
             "{} = {} exceeds cuBLAS's int range", what, value);
  return static_cast<int>(value);
}

void double_gemm(const Tensor& out, const Operand& first, const Operand& second, int64_t m,
                 int64_t n, int64_t k, int32_t batch, double beta) {
  const double alpha = 1.0;
  DSSM_CUBLAS_CHECK(cublasDgemmStridedBatched(
      device_blas().blas, first.op, second.op, as_int(m, "N"), as_int(n, "M"), as_int(k, "K"),
      &alpha, static_cast<const double*>(first.data), as_int(first.ld, "leading dimension"),
      first.batch_stride, static_cast<const double*>(second.data),
      as_int(second.ld, "leading dimension"), second.batch_stride, &beta,
      static_cast<double*>(out.raw_data()), as_int(m, "N"), m * n, batch));
}

}  // namespace

void set_allow_tf32(bool allow) {
  g_allow_tf32 = allow;
}
bool allow_tf32() {
  return g_allow_tf32;
}

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  DSSM_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, "matmul",
             "expected [B, M, K] @ [B, K, N] -> [B, M, N], got {} @ {} -> {}", describe(a),
             describe(b), describe(out));
  const int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  DSSM_CHECK(a.size(0) == B && b.size(0) == B && a.size(1) == M && b.size(1) == K && b.size(2) == N,
             "matmul", "shapes do not chain: {} @ {} -> {}", describe(a), describe(b),
             describe(out));
  DSSM_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "matmul",
             "dtype mismatch: {} @ {} -> {}", describe(a), describe(b), describe(out));
  DSSM_CHECK(out.is_contiguous(), "matmul", "expected a contiguous output, got {}", describe(out));
  if (out.numel() == 0) return;
  require_device(out.device().index);
  if (K == 0) {  // an empty sum
    if (!accumulate)
      DSSM_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), current_stream()));
    return;
  }
  const int32_t batch = as_int(B, "batch");
  // Swapped product (file comment): cuBLAS's first operand is b, its second a.
  const Operand first = transposed_operand(b, "b"), second = transposed_operand(a, "a");
  switch (out.dtype()) {
    case DType::bf16:
    case DType::f32:
      return lt_gemm(out, first, second, N, M, K, batch, accumulate ? 1.0f : 0.0f);
    case DType::f64:
      return double_gemm(out, first, second, N, M, K, batch, accumulate ? 1.0 : 0.0);
    default:
      fail("matmul", "expected a floating dtype, got {}", describe(out));
  }
}

}  // namespace dssm::cuda
