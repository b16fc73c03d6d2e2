// The CUDA kernels of the network ops against their CPU versions: softmax, cross_entropy,
// embedding, the norms, the shape ops and dropout, forward and gradients, in f32, bf16 and f64,
// on fresh random inputs; then their gradchecks on the GPU, and the errors of bad indices.
//
// For bf16 both devices start from the same bf16-rounded inputs; the CPU reference computes in
// f32 from them, the GPU stores bf16 (and computes in f32).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

#include "ops/cross_entropy.hpp"
#include "ops/dropout.hpp"
#include "ops/elementwise.hpp"
#include "ops/embedding.hpp"
#include "ops/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"

using namespace dssm;

namespace {

const Device kGpu = Device::cuda(0);
const std::vector<DType> kFloatingTypes = {DType::f32, DType::bf16, DType::f64};

// The tolerance of a comparison: f32 `f32_tol` (1e-5, or 1e-4 where the op reduces long rows),
// bf16 2e-2, f64 1e-10.
double tolerance(DType dtype, double f32_tol = 1e-5) {
  return dtype == DType::bf16 ? 2e-2 : dtype == DType::f64 ? 1e-10 : f32_tol;
}

// Each element: |gpu - cpu| <= tol * (|cpu| + max|cpu|), i.e. relative error, with an absolute
// floor set by the largest magnitude (for elements that cancel to near 0).
void check_close(const Tensor& gpu, const Tensor& cpu, double tol, const std::string& what) {
  INFO(what << ": " << describe(gpu) << " vs " << describe(cpu));
  REQUIRE(gpu.shape() == cpu.shape());
  const std::vector<double> g = gpu.to_vector<double>(), c = cpu.to_vector<double>();
  double largest = 0;
  for (double v : c) largest = std::max(largest, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - c[i]);
    if (!(err <= tol * (std::abs(c[i]) + largest))) {  // NaN fails too
      INFO("element " << i << ": gpu " << g[i] << ", cpu " << c[i]);
      REQUIRE(err <= tol * (std::abs(c[i]) + largest));
    }
  }
}

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs `op` on the CPU and on the GPU from the same inputs (floating ones rounded to `dtype`),
// backpropagates sum(y * w) for the same random w on both, and compares y and every floating
// input's gradient.
void check_op(const std::string& what, const Op& op, const std::vector<Tensor>& inputs, DType dtype,
              double f32_tol = 1e-5, double grad_f32_tol = 1e-5) {
  const DType reference = dtype == DType::bf16 ? DType::f32 : dtype;
  std::vector<Tensor> on_cpu, on_gpu;
  for (const Tensor& t : inputs) {
    if (!is_floating(t.dtype())) {
      on_cpu.push_back(t);
      on_gpu.push_back(t.to(kGpu));
      continue;
    }
    const Tensor rounded = t.to(dtype);
    on_cpu.push_back(rounded.to(reference).detach().set_requires_grad(true));
    on_gpu.push_back(rounded.to(kGpu).detach().set_requires_grad(true));
  }
  const Tensor y_cpu = op(on_cpu), y_gpu = op(on_gpu);
  REQUIRE(y_gpu.is_cuda());
  check_close(y_gpu, y_cpu, tolerance(dtype, f32_tol), what + " forward");

  Generator gen(99);
  const Tensor w = Tensor::randn(y_cpu.shape(), gen, DType::f64);
  sum(y_cpu * w.to(y_cpu.dtype())).backward();
  sum(y_gpu * w.to(y_gpu.dtype()).to(kGpu)).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!is_floating(inputs[i].dtype())) continue;
    REQUIRE(on_gpu[i].grad().defined());
    check_close(on_gpu[i].grad(), on_cpu[i].grad(), tolerance(dtype, grad_f32_tol),
                what + " gradient of input " + std::to_string(i));
  }
}

std::string shape_string(const Shape& shape) {
  std::string out = "[";
  for (size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
  return out + "]";
}

Tensor normal(Generator& gen, const Shape& shape, double scale = 1.0) {
  return Tensor::randn(shape, gen) * scale;
}

// Random ids in [0, high), i32 or i64, with repeats when n > high.
Tensor random_ids(Generator& gen, const Shape& shape, int64_t high, DType dtype) {
  std::vector<int64_t> ids;
  for (double u : Tensor::rand(shape, gen, DType::f64).to_vector<double>()) {
    ids.push_back(std::min(high - 1, static_cast<int64_t>(u * static_cast<double>(high))));
  }
  return Tensor::from_vector(ids, shape).to(dtype);
}

}  // namespace

TEST_CASE("CUDA softmax and log_softmax match the CPU", "[cuda][nnops]") {
  Generator gen(1);
  for (DType dtype : kFloatingTypes) {
    for (bool log : {false, true}) {
      const std::string name =
          std::string(log ? "log_softmax " : "softmax ") + std::string(dtype_name(dtype));
      auto along = [log](int64_t dim) -> Op {
        return [log, dim](const std::vector<Tensor>& in) {
          return log ? log_softmax(in[0], dim) : softmax(in[0], dim);
        };
      };
      check_op(name + " [64, 7]", along(-1), {normal(gen, {64, 7}, 3.0)}, dtype);
      check_op(name + " [37, 1000]", along(-1), {normal(gen, {37, 1000}, 3.0)}, dtype);
      check_op(name + " dim 1 of [5, 300, 3]", along(1), {normal(gen, {5, 300, 3})}, dtype);
      check_op(name + " [4, 32000]", along(-1), {normal(gen, {4, 32000}, 3.0)}, dtype, 1e-4, 1e-4);
    }
  }
}

// The layouts of the register kernels (cuda/row_reduce.cuh's plan_rows): a warp per row (short
// rows), a block per row of 1, 2 and 4 packs per thread, 512-thread blocks (8192 columns), and the
// looped kernels for rows that start off 16-byte boundaries.
TEST_CASE("CUDA softmax matches the CPU on every row layout", "[cuda][nnops]") {
  Generator gen(11);
  for (DType dtype : kFloatingTypes) {
    for (bool log : {false, true}) {
      const std::string name =
          std::string(log ? "log_softmax " : "softmax ") + std::string(dtype_name(dtype));
      const Op last = [log](const std::vector<Tensor>& in) {
        return log ? log_softmax(in[0], -1) : softmax(in[0], -1);
      };
      for (const Shape& shape : std::vector<Shape>{
               {100, 96}, {70, 256}, {50, 1024}, {40, 2048}, {300, 4096}, {9, 8192}}) {
        check_op(name + " " + shape_string(shape), last, {normal(gen, shape, 3.0)}, dtype, 1e-5,
                 1e-4);
      }
      // Rows of 96 starting one element past a 16-byte boundary: the looped kernels.
      const Op shifted = [log](const std::vector<Tensor>& in) {
        const Tensor x = in[0].narrow(0, 1, 96 * 20).reshape({20, 96});
        return log ? log_softmax(x, -1) : softmax(x, -1);
      };
      check_op(name + " misaligned [20, 96]", shifted, {normal(gen, {96 * 20 + 1}, 3.0)}, dtype);
    }
  }
}

TEST_CASE("CUDA cross_entropy matches the CPU over a 32000-word vocabulary", "[cuda][nnops]") {
  Generator gen(2);
  const Op loss = [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); };
  for (DType dtype : kFloatingTypes) {
    for (DType index_dtype : {DType::i64, DType::i32}) {
      const std::string name = "cross_entropy " + std::string(dtype_name(dtype)) + " " +
                               std::string(dtype_name(index_dtype));
      // Every fifth row ignored.
      std::vector<int64_t> targets = random_ids(gen, {48}, 32000, DType::i64).to_vector<int64_t>();
      for (size_t n = 0; n < targets.size(); n += 5) targets[n] = -100;
      const Tensor t = Tensor::from_vector(targets, {48}).to(index_dtype);
      check_op(name + " [48, 32000]", loss, {normal(gen, {48, 32000}, 4.0), t}, dtype, 1e-4, 1e-4);
      check_op(name + " [9, 5]", loss, {normal(gen, {9, 5}), random_ids(gen, {9}, 5, index_dtype)},
               dtype);
      // The vector kernels' tails: rows of 1000 (not a multiple of the threads' packs), and
      // logits starting off a 16-byte boundary (the scalar kernels).
      check_op(name + " [300, 1000]", loss,
               {normal(gen, {300, 1000}, 4.0), random_ids(gen, {300}, 1000, index_dtype)}, dtype,
               1e-4, 1e-4);
      const Op shifted = [](const std::vector<Tensor>& in) {
        return cross_entropy(in[0].narrow(0, 1, 16 * 1000).reshape({16, 1000}), in[1]);
      };
      check_op(name + " misaligned [16, 1000]", shifted,
               {normal(gen, {16 * 1000 + 1}, 4.0), random_ids(gen, {16}, 1000, index_dtype)}, dtype,
               1e-4, 1e-4);
    }
  }
}

TEST_CASE("CUDA cross_entropy handles all-ignored rows and reports bad targets", "[cuda][nnops]") {
  Generator gen(3);
  const Tensor logits = normal(gen, {4, 6}).to(kGpu).detach().set_requires_grad(true);
  const Tensor none = Tensor::full({4}, -100, DType::i64, kGpu);
  const Tensor loss = cross_entropy(logits, none);
  CHECK(loss.item() == 0.0);
  loss.backward();
  for (double g : logits.grad().to_vector<double>()) CHECK(g == 0.0);
  const Tensor bad = Tensor::from_vector<int32_t>({0, 5, 6, -2}, {4}, DType::i32, kGpu);
  CHECK_THROWS_WITH(cross_entropy(logits, bad), Catch::Contains("target 6 at row 2"));
}

TEST_CASE("CUDA embedding matches the CPU, repeated ids summed", "[cuda][nnops]") {
  Generator gen(4);
  const Op lookup = [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); };
  for (DType dtype : kFloatingTypes) {
    for (DType index_dtype : {DType::i64, DType::i32}) {
      const std::string name = "embedding " + std::string(dtype_name(dtype));
      // 400 ids among the first 100 rows of 1000: each used about 4 times, most rows unused.
      check_op(name, lookup, {normal(gen, {1000, 64}), random_ids(gen, {8, 50}, 100, index_dtype)},
               dtype);
    }
  }
  const Tensor weight = Tensor::zeros({10, 4}, DType::f32, kGpu);
  const Tensor ids = Tensor::from_vector<int64_t>({1, 2, 3, 10, 11, 0}, {2, 3}, DType::i64, kGpu);
  CHECK_THROWS_WITH(embedding(weight, ids), Catch::Contains("id 10 at position [1, 0]"));
}

TEST_CASE("CUDA norms match the CPU, forward and all gradients", "[cuda][nnops]") {
  Generator gen(5);
  for (DType dtype : kFloatingTypes) {
    const std::string type(dtype_name(dtype));
    const Tensor x = normal(gen, {4, 33, 768}, 2.0) + 0.3;
    const Tensor w = Tensor::rand({768}, gen) + 0.5, b = normal(gen, {768});
    // Gradients of the weights sum over all 132 rows: the tolerance of long reductions.
    check_op(
        "rms_norm " + type,
        [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1], 1e-6); }, {x, w}, dtype,
        1e-5, 1e-4);
    check_op(
        "layer_norm " + type,
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); },
        {x, w, b}, dtype, 1e-5, 1e-4);
    check_op(
        "layer_norm without bias " + type,
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 1e-5); },
        {x, w}, dtype, 1e-5, 1e-4);
    const Tensor heads = normal(gen, {2, 2000, 512});  // more rows than the backward's warps
    const Tensor hw = Tensor::rand({512}, gen) + 0.5;
    check_op(
        "group_rms_norm " + type,
        [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 8, 1e-6, in[1]); },
        {heads, hw}, dtype, 1e-5, 1e-4);
    check_op(
        "group_rms_norm without weight " + type,
        [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 4, 1e-6); },
        {normal(gen, {7, 96})}, dtype, 1e-5, 1e-4);
  }
}

// The layouts of the register kernels: block teams with 1, 2 and 4 packs per thread and 512
// threads, more rows than resident teams (each team loops, summing dweight in registers), groups
// on block teams, rows off 16-byte boundaries (the looped kernels), and rows too long to fit.
TEST_CASE("CUDA norms match the CPU on every row layout", "[cuda][nnops]") {
  Generator gen(12);
  for (DType dtype : kFloatingTypes) {
    const std::string type(dtype_name(dtype));
    for (const Shape& shape :
         std::vector<Shape>{{3000, 1024}, {300, 4096}, {20, 8192}, {6, 20000}, {50, 99}}) {
      const Tensor x = normal(gen, shape, 2.0) + 0.3;
      const Tensor w = Tensor::rand({shape[1]}, gen) + 0.5, b = normal(gen, {shape[1]});
      check_op(
          "rms_norm " + type + " " + shape_string(shape),
          [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1], 1e-6); }, {x, w}, dtype,
          1e-5, 1e-4);
      check_op(
          "layer_norm " + type + " " + shape_string(shape),
          [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); },
          {x, w, b}, dtype, 1e-5, 1e-4);
    }
    const Tensor heads = normal(gen, {600, 4096});
    const Tensor hw = Tensor::rand({4096}, gen) + 0.5;
    check_op(
        "group_rms_norm 2 groups of 2048 " + type,
        [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 2, 1e-6, in[1]); },
        {heads, hw}, dtype, 1e-5, 1e-4);
    check_op(
        "group_rms_norm 3 groups of 1024 " + type,
        [](const std::vector<Tensor>& in) { return group_rms_norm(in[0], 3, 1e-6, in[1]); },
        {normal(gen, {500, 3072}), Tensor::rand({3072}, gen) + 0.5}, dtype, 1e-5, 1e-4);
    check_op(
        "rms_norm misaligned [30, 64] " + type,
        [](const std::vector<Tensor>& in) {
          return rms_norm(in[0].narrow(0, 1, 30 * 64).reshape({30, 64}), in[1], 1e-6);
        },
        {normal(gen, {30 * 64 + 1}), Tensor::rand({64}, gen) + 0.5}, dtype, 1e-5, 1e-4);
  }
}

TEST_CASE("CUDA concat, split, index_select, where and masked_fill match the CPU",
          "[cuda][nnops]") {
  Generator gen(6);
  for (DType dtype : kFloatingTypes) {
    const std::string type(dtype_name(dtype));
    check_op(
        "concat + split " + type,
        [](const std::vector<Tensor>& in) {
          const std::vector<Tensor> parts = split(concat({in[0], in[1]}, 1), {5, 6}, 1);
          return concat({parts[1] * parts[1], parts[0]}, 1);
        },
        {normal(gen, {3, 4, 8}), normal(gen, {3, 7, 8})}, dtype);
    check_op(
        "index_select " + type,
        [](const std::vector<Tensor>& in) { return index_select(in[0], 1, in[1]); },
        {normal(gen, {6, 50, 33}), random_ids(gen, {300}, 50, DType::i64)}, dtype);
    check_op(
        "index_select dim 0 " + type,
        [](const std::vector<Tensor>& in) { return index_select(in[0], 0, in[1]); },
        {normal(gen, {20, 16}), random_ids(gen, {64}, 20, DType::i32)}, dtype);
    for (DType cond_dtype : {DType::i64, DType::f32, DType::bf16}) {
      const Tensor cond = random_ids(gen, {5, 1, 9}, 2, DType::i64).to(cond_dtype);
      check_op(
          "where " + type + " cond " + std::string(dtype_name(cond_dtype)),
          [cond](const std::vector<Tensor>& in) {
            return where(cond.to(in[0].device()), in[0], in[1]);
          },
          {normal(gen, {5, 4, 9}), normal(gen, {4, 1})}, dtype);
    }
    const Tensor mask = random_ids(gen, {6}, 2, DType::i32);
    check_op(
        "masked_fill " + type,
        [mask](const std::vector<Tensor>& in) {
          return masked_fill(in[0], mask.to(in[0].device()), -3.0);
        },
        {normal(gen, {3, 6})}, dtype);
  }
  const Tensor x = Tensor::zeros({4, 3}, DType::f32, kGpu);
  CHECK_THROWS_WITH(index_select(x, 0, Tensor::from_vector<int64_t>({0, 4}, {2}, DType::i64, kGpu)),
                    Catch::Contains("index[1] = 4"));
}

TEST_CASE("CUDA dropout drops exactly the elements the CPU drops", "[cuda][nnops]") {
  Generator gen(7);
  for (DType dtype : kFloatingTypes) {
    // Two generators in the same state give the same (seed, offset) on both devices.
    Generator on_cpu(31), on_gpu(31);
    on_cpu.advance(1000), on_gpu.advance(1000);
    const Op drop = [&](const std::vector<Tensor>& in) {
      return dropout(in[0], 0.25, true, in[0].is_cuda() ? on_gpu : on_cpu);
    };
    check_op("dropout " + std::string(dtype_name(dtype)), drop, {normal(gen, {70000})}, dtype);
    CHECK(on_cpu.offset() == on_gpu.offset());
  }
}

TEST_CASE("the nn ops pass gradcheck on the GPU in f64", "[cuda][nnops]") {
  const std::vector<std::string> names = {"softmax",        "softmax_dim0",
                                          "log_softmax",    "log_softmax_dim1",
                                          "cross_entropy",  "cross_entropy_i32",
                                          "embedding",      "rms_norm",
                                          "layer_norm",     "layer_norm_no_bias",
                                          "group_rms_norm", "group_rms_norm_no_weight",
                                          "concat",         "stack",
                                          "split",          "chunk",
                                          "index_select",   "where",
                                          "masked_fill",    "dropout"};
  size_t checked = 0;
  for (const GradcheckCase& c : registered_ops()) {
    if (std::find(names.begin(), names.end(), c.name) == names.end()) continue;
    const GradcheckResult r = gradcheck(c, kGpu);
    INFO(c.name << ": max abs err " << r.max_abs_err << " " << r.error);
    CHECK(r.passed);
    ++checked;
  }
  CHECK(checked == names.size());
}
