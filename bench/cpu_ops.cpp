// CPU micro-benchmarks (not tests): our ops against Eigen called directly and against memcpy.
//   build/cpu_ops            prints one table; results are recorded in docs/benchmarks.md
//   build/cpu_ops softmax    only the rows whose label contains "softmax"
//
// matmul: GFLOP/s of dssm::matmul / bmm against Eigen's GEMM on the same shapes and threads.
// elementwise and softmax: GB/s (bytes read + written once) against memcpy of the same bytes.
// The unary ops run forward through dssm::unary and backward through their CPU kernel
// (vec::unary_backward, dx = g f'(saved)), in f32 and bf16.
#include <fmt/format.h>
#include <omp.h>
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/grad_mode.hpp"
#include "ops/cpu_vectorised_unary.hpp"
#include "ops/cross_entropy.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/softmax.hpp"

using namespace dssm;

namespace {

// The rows to run: those whose label contains this text (all when empty).
std::string g_filter;
bool selected(const std::string& label) {
  return label.find(g_filter) != std::string::npos;
}

// Median wall time of `reps` runs after one warm-up, in seconds.
double time_median(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void bench_matmul(const char* label, int64_t batch, int64_t m, int64_t k, int64_t n, int reps) {
  if (!selected(std::string("matmul ") + label)) return;
  Generator gen(1);
  const Tensor a = Tensor::randn({batch, m, k}, gen), b = Tensor::randn({batch, k, n}, gen);
  const double flops = 2.0 * batch * m * k * n;
  const double ours = time_median([&] { bmm(a, b); }, reps);
  std::vector<Matrix> ea(batch, Matrix::Random(m, k)), eb(batch, Matrix::Random(k, n)),
      ec(batch, Matrix(m, n));
  const double eigen = time_median(
      [&] {
        for (int64_t i = 0; i < batch; ++i) ec[i].noalias() = ea[i] * eb[i];
      },
      reps);
  fmt::print("{:<28} {:>10.1f} {:>10.1f} {:>8.2f}x\n", label, flops / ours / 1e9,
             flops / eigen / 1e9, eigen / ours);
}

// Seconds of one run of fn.
double time_once(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The op against a memcpy of the same bytes (read + write) with the same threads, run in turns
// (op, copy, op, copy, ...) after a warm-up, each timed by its fastest run: on a shared machine
// the fastest run is the one least disturbed, and turns expose both to the same load.
void bench_bandwidth(const char* label, int64_t n, int reads, int writes,
                     const std::function<void()>& fn, int reps, int element_bytes = 4) {
  if (!selected(label)) return;
  const double bytes = static_cast<double>(n) * element_bytes * (reads + writes);
  const size_t copy_bytes = static_cast<size_t>(bytes / 2);
  std::vector<char> a(copy_bytes, 1), b(copy_bytes);
  const auto copy = [&] {
    const int64_t threads = omp_get_max_threads(), chunk = copy_bytes / threads;
#pragma omp parallel for
    for (int64_t t = 0; t < threads; ++t) {
      const size_t len = t == threads - 1 ? copy_bytes - t * chunk : chunk;
      std::memcpy(b.data() + t * chunk, a.data() + t * chunk, len);
    }
  };
  fn();
  copy();
  double ours = 1e30, copied = 1e30;
  for (int i = 0; i < reps; ++i) {
    ours = std::min(ours, time_once(fn));
    copied = std::min(copied, time_once(copy));
  }
  fmt::print("{:<34} {:>10.2f} {:>10.2f} {:>8.2f}x\n", label, bytes / ours / 1e9,
             bytes / copied / 1e9, copied / ours);
}

struct UnaryBench {
  const char* name;
  UnaryOp op;
  bool positive;  // inputs > 0 (log, sqrt, rsqrt)
};
const UnaryBench kUnary[] = {
    {"exp", UnaryOp::exp, false},           {"log", UnaryOp::log, true},
    {"sqrt", UnaryOp::sqrt, true},          {"rsqrt", UnaryOp::rsqrt, true},
    {"sigmoid", UnaryOp::sigmoid, false},   {"tanh", UnaryOp::tanh, false},
    {"silu", UnaryOp::silu, false},         {"gelu", UnaryOp::gelu, false},
    {"softplus", UnaryOp::softplus, false}, {"relu", UnaryOp::relu, false},
};

// Forward (1 read, 1 write) and backward (2 reads, 1 write) of each unary op on n elements of
// `x` (f32 or bf16; `positive` = |x| for the ops that need it).
void bench_unary(const Tensor& x, const Tensor& positive, const char* suffix) {
  const int64_t n = x.numel();
  const int bytes = static_cast<int>(dtype_size(x.dtype()));
  const Tensor g = x.clone(), dx = Tensor::empty(x.shape(), x.dtype());
  for (const UnaryBench& u : kUnary) {
    const Tensor& in = u.positive ? positive : x;
    bench_bandwidth(
        fmt::format("{}{}", u.name, suffix).c_str(), n, 1, 1, [&] { unary(u.op, in); }, 10, bytes);
  }
  for (const UnaryBench& u : kUnary) {
    const Tensor& in = u.positive ? positive : x;
    dispatch_unary(u.op, [&]<UnaryOp kOp>() {
      dispatch_floating(x.dtype(), "bench", [&]<typename T>() {
        if constexpr (!std::is_same_v<T, double>) {
          bench_bandwidth(
              fmt::format("{} backward{}", u.name, suffix).c_str(), n, 2, 1,
              [&] { vec::unary_backward<kOp>(g.data<T>(), in.data<T>(), dx.data<T>(), n, 0.0f); },
              10, bytes);
        }
      });
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_filter = argv[1];
  NoGradGuard no_grad;
  fmt::print("threads: {}\n\n", omp_get_max_threads());
  fmt::print("{:<28} {:>10} {:>10} {:>9}\n", "matmul (f32)", "ours GF/s", "Eigen GF/s", "ratio");
  bench_matmul("1024 x 1024 x 1024", 1, 1024, 1024, 1024, 5);
  bench_matmul("4096 x 1024 x 1024", 1, 4096, 1024, 1024, 3);
  bench_matmul("16 x 256 x 256 x 256", 16, 256, 256, 256, 10);

  const int64_t n = int64_t{1} << 24;  // 64 MB of f32 per operand
  Generator gen(2);
  const Tensor x = Tensor::randn({n}, gen), y = Tensor::randn({n}, gen);
  const Tensor positive = abs(x), x_bf16 = x.to(DType::bf16);
  const Tensor rows = Tensor::randn({n / 4096, 4096}, gen);
  const Tensor weight = Tensor::ones({4096}), bias = Tensor::zeros({4096});
  const Tensor targets = Tensor::zeros({n / 4096}, DType::i64);
  fmt::print("\n{:<34} {:>10} {:>10} {:>9}\n", "bandwidth (f32, 64 MB)", "ours GB/s", "memcpy GB/s",
             "ratio");
  bench_bandwidth(
      "add", n, 2, 1, [&] { add(x, y); }, 10);
  bench_bandwidth(
      "mul_scalar", n, 1, 1, [&] { mul_scalar(x, 1.5); }, 10);
  bench_unary(x, positive, "");
  bench_unary(x_bf16, positive.to(DType::bf16), " bf16 (32 MB)");
  bench_bandwidth(
      "softmax (rows of 4096)", n, 1, 1, [&] { softmax(rows, -1); }, 10);
  bench_bandwidth(
      "log_softmax (rows of 4096)", n, 1, 1, [&] { log_softmax(rows, -1); }, 10);
  bench_bandwidth(
      "rms_norm (rows of 4096)", n, 1, 1, [&] { rms_norm(rows, weight); }, 10);
  bench_bandwidth(
      "layer_norm (rows of 4096)", n, 1, 1, [&] { layer_norm(rows, weight, bias); }, 10);
  // Forward only: reads the logits once, writes one number per row.
  bench_bandwidth(
      "cross_entropy [4096, 4096]", n, 1, 0, [&] { cross_entropy(rows, targets); }, 10);
  return 0;
}
