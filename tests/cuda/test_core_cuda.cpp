// The CUDA backend of the core against the CPU: copies, the RNG, every elementwise, reduction
// and matmul op (forward and gradients), the gradcheck registry, the caching allocator, and the
// errors of bad calls. Each check runs the op on both devices from the same random inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "autograd/grad_mode.hpp"
#include "cuda/allocator.hpp"
#include "cuda/backend.hpp"
#include "cuda/blas.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

const Device kCuda = Device::cuda(0);

struct Tolerance {
  double rtol;
  double atol;  // relative to the largest expected magnitude (at least 1)
};
constexpr Tolerance kF32{1e-5, 1e-6};
constexpr Tolerance kF32Long{1e-4, 1e-5};  // reductions over long rows, GEMMs
constexpr Tolerance kBf16{2e-2, 2e-2};
constexpr Tolerance kF64{1e-12, 1e-12};

Tolerance tolerance_for(DType dtype, Tolerance f32 = kF32) {
  return dtype == DType::bf16 ? kBf16 : dtype == DType::f64 ? kF64 : f32;
}

// |actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|, element by element.
void require_close(const Tensor& actual, const Tensor& expected, Tolerance tol,
                   const std::string& what) {
  INFO(what << ": " << describe(actual) << " vs " << describe(expected));
  REQUIRE(actual.shape() == expected.shape());
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double scale = 1;
  for (double v : e) scale = std::max(scale, std::abs(v));
  size_t worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - e[i]) - (tol.atol * scale + tol.rtol * std::abs(e[i]));
    if (!(excess <= worst_excess)) worst_excess = excess, worst = i;  // NaN counts as worst
  }
  if (a.empty()) return;
  INFO("worst element " << worst << ": " << a[worst] << " vs " << e[worst]);
  REQUIRE(worst_excess <= 0);
}

// Values uniform in [lo, hi) drawn on the CPU, rounded to `dtype`.
Tensor uniform(Generator& gen, const Shape& shape, double lo, double hi, DType dtype) {
  return (Tensor::rand(shape, gen, DType::f64) * (hi - lo) + lo).to(dtype);
}
Tensor normal(Generator& gen, const Shape& shape, DType dtype) {
  return Tensor::randn(shape, gen, DType::f64).to(dtype);
}

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Outcome {
  Tensor output;
  std::vector<Tensor> grads;  // one per input, on the CPU
};

// Runs fn on copies of the inputs placed on `device`, then backward with output weights `w`.
Outcome run_on(Device device, const std::vector<Tensor>& inputs, const OpFn& fn, const Tensor& w) {
  std::vector<Tensor> placed;
  for (const Tensor& x : inputs) {
    Tensor t = x.to(device).detach();
    t.set_requires_grad(true);
    placed.push_back(t);
  }
  Outcome outcome{fn(placed), {}};
  outcome.output.backward(w.to(device));
  for (const Tensor& t : placed) outcome.grads.push_back(t.grad().to(Device::cpu()));
  outcome.output = outcome.output.detach().to(Device::cpu());
  return outcome;
}

// The op's output and every input gradient on CUDA equal those on the CPU within `tol`.
void check_against_cpu(const std::string& name, const std::vector<Tensor>& inputs, const OpFn& fn,
                       Tolerance tol, Generator& gen) {
  Tensor w;
  {
    NoGradGuard no_grad;
    w = normal(gen, fn(inputs).shape(), inputs[0].dtype());
  }
  const Outcome cpu = run_on(Device::cpu(), inputs, fn, w);
  const Outcome gpu = run_on(kCuda, inputs, fn, w);
  require_close(gpu.output, cpu.output, tol, name + " forward");
  for (size_t i = 0; i < inputs.size(); ++i) {
    require_close(gpu.grads[i], cpu.grads[i], tol,
                  name + " gradient of input " + std::to_string(i));
  }
}

const DType kFloating[] = {DType::f32, DType::bf16, DType::f64};

}  // namespace

TEST_CASE("host-device round trips keep every dtype's bits", "[cuda]") {
  Generator gen(1);
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    INFO("dtype " << dtype_name(dtype));
    const Tensor host = (Tensor::randn({37, 19}, gen, DType::f64) * 1000.0).to(dtype);
    const Tensor device = host.to(kCuda);
    REQUIRE(device.is_cuda());
    CHECK(device.to(Device::cpu()).to_vector<double>() == host.to_vector<double>());
    // Non-contiguous both ways: a transposed host view up, a sliced device view down.
    const Tensor view = host.transpose(0, 1);
    CHECK(view.to(kCuda).to_vector<double>() == view.to_vector<double>());
    const Tensor slice = device.narrow(1, 3, 7).narrow(0, 2, 30);
    CHECK(slice.to(Device::cpu()).to_vector<double>() ==
          host.narrow(1, 3, 7).narrow(0, 2, 30).to_vector<double>());
    // Strided copy on the device itself.
    CHECK(device.transpose(0, 1).contiguous().to_vector<double>() == view.to_vector<double>());
  }
}

TEST_CASE("dtype conversion and fill on the device match the CPU exactly", "[cuda]") {
  Generator gen(2);
  const Tensor host = Tensor::randn({513, 7}, gen, DType::f64) * 300.0;
  const Tensor device = host.to(kCuda);
  for (DType from : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::i64}) {
    for (DType to : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::i64}) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const Tensor cpu = host.to(from).to(to);
      CHECK(device.to(from).to(to).to_vector<double>() == cpu.to_vector<double>());
      CHECK(device.to(from).transpose(0, 1).to(to).to_vector<double>() ==
            host.to(from).transpose(0, 1).to(to).to_vector<double>());
    }
  }
  for (DType dtype : kFloating) {
    const Tensor t = Tensor::zeros({6, 10}, dtype, kCuda);
    t.narrow(1, 2, 5).fill_(1.0 / 3.0);  // a strided view
    const Tensor expected = Tensor::zeros({6, 10}, dtype);
    expected.narrow(1, 2, 5).fill_(1.0 / 3.0);
    CHECK(t.to_vector<double>() == expected.to_vector<double>());
  }
}

TEST_CASE("strided copies on the device match the CPU exactly", "[cuda]") {
  // Views whose stride-1 dimension is not the last (the tiled copies; bf16 of even sizes and
  // strides moves two values at a time), at sizes that are not multiples of their tiles, with
  // dimensions before, between and after, a slice and a broadcast; views that keep the last
  // dimension (the row copy): a slice, a permute, a broadcast, rows shorter than the row copy
  // takes, rows that end in a partial piece, 16-byte aligned rows; each made contiguous and
  // converted to every dtype. Then concat, which copies into slices of its output, also from
  // transposed views.
  Generator gen(3);
  const Tensor cube = Tensor::randn({2, 50, 70}, gen, DType::f64) * 300.0;
  const Tensor four = Tensor::randn({2, 5, 33, 40}, gen, DType::f64) * 300.0;
  const Tensor column = Tensor::randn({40, 1}, gen, DType::f64) * 300.0;
  struct View {
    const char* name;
    const Tensor& base;
    std::function<Tensor(const Tensor&)> take;
  };
  const std::vector<View> views = {
      {"transpose(1, 2)", cube, [](const Tensor& t) { return t.transpose(1, 2); }},
      {"slice, transpose", cube,
       [](const Tensor& t) { return t.narrow(2, 35, 35).transpose(1, 2); }},
      {"even slice, transpose", cube,
       [](const Tensor& t) { return t.narrow(2, 6, 40).transpose(1, 2); }},
      {"permute(0, 2, 3, 1)", four,
       [](const Tensor& t) {
         return t.permute({0, 2, 3, 1});
       }},
      {"permute(0, 3, 1, 2)", four,
       [](const Tensor& t) {
         return t.permute({0, 3, 1, 2});
       }},
      {"expand", column,
       [](const Tensor& t) {
         return t.expand({40, 37});
       }},
      {"narrow(2, 5, 40)", cube, [](const Tensor& t) { return t.narrow(2, 5, 40); }},
      {"narrow(2, 5, 9)", cube, [](const Tensor& t) { return t.narrow(2, 5, 9); }},
      {"narrow(2, 3, 21)", cube, [](const Tensor& t) { return t.narrow(2, 3, 21); }},
      {"narrow(3, 8, 24), aligned rows", four, [](const Tensor& t) { return t.narrow(3, 8, 24); }},
      {"permute(1, 0, 2, 3)", four,
       [](const Tensor& t) {
         return t.permute({1, 0, 2, 3});
       }},
      {"rows expanded", column, [](const Tensor& t) {
         return t.transpose(0, 1).expand({37, 40});
       }}};
  for (DType from : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::i64}) {
    for (const View& view : views) {
      const Tensor host = view.take(view.base.to(from));
      const Tensor device = view.take(view.base.to(from).to(kCuda));
      for (DType to : {DType::f64, DType::f32, DType::bf16, DType::i32, DType::i64}) {
        INFO(view.name << ", " << dtype_name(from) << " -> " << dtype_name(to));
        const Tensor got = device.to(to).contiguous();
        CHECK(got.shape() == host.shape());
        CHECK(got.to_vector<double>() == host.to(to).contiguous().to_vector<double>());
      }
    }
  }
  const Tensor device = cube.to(kCuda);
  CHECK(concat({device.narrow(2, 3, 20), device}, 2).to_vector<double>() ==
        concat({cube.narrow(2, 3, 20), cube}, 2).to_vector<double>());
  CHECK(concat({device, device.narrow(1, 1, 7)}, 1).to_vector<double>() ==
        concat({cube, cube.narrow(1, 1, 7)}, 1).to_vector<double>());
  // Transposed views into slices of the output (the tiled copy into a destination that is not
  // contiguous: split's backward in the Mamba mixer), of odd and of even sizes.
  for (DType dtype : {DType::f64, DType::bf16}) {
    const Tensor host = cube.to(dtype), on_device = host.to(kCuda);
    for (int64_t rows : {9, 10}) {
      INFO(dtype_name(dtype) << ", rows " << rows);
      CHECK(concat({on_device.transpose(1, 2), on_device.narrow(1, 0, rows).transpose(1, 2)}, 2)
                .to_vector<double>() ==
            concat({host.transpose(1, 2), host.narrow(1, 0, rows).transpose(1, 2)}, 2)
                .to_vector<double>());
    }
  }
}

TEST_CASE("the same seed draws the same numbers on the CPU and on CUDA", "[cuda]") {
  for (DType dtype : kFloating) {
    INFO("dtype " << dtype_name(dtype));
    Generator cpu_gen(20251122), gpu_gen(20251122);
    // Two draws each, so the second starts at a non-zero offset.
    for (int draw = 0; draw < 2; ++draw) {
      const Tensor u_cpu = Tensor::rand({1001, 3}, cpu_gen, dtype);
      const Tensor u_gpu = Tensor::rand({1001, 3}, gpu_gen, dtype, kCuda);
      CHECK(u_gpu.to_vector<double>() == u_cpu.to_vector<double>());
      const Tensor n_cpu = Tensor::randn({4097}, cpu_gen, dtype);
      const Tensor n_gpu = Tensor::randn({4097}, gpu_gen, dtype, kCuda);
      require_close(n_gpu, n_cpu, dtype == DType::bf16 ? kBf16 : Tolerance{1e-6, 1e-6}, "randn");
    }
    CHECK(cpu_gen.offset() == gpu_gen.offset());
  }
}

TEST_CASE("unary ops and their gradients match the CPU", "[cuda]") {
  struct Case {
    UnaryOp op;
    double lo, hi, param;
  };
  const Case cases[] = {{UnaryOp::neg, -2, 2, 0},          {UnaryOp::exp, -2, 2, 0},
                        {UnaryOp::log, 0.2, 3, 0},         {UnaryOp::sqrt, 0.2, 3, 0},
                        {UnaryOp::rsqrt, 0.2, 3, 0},       {UnaryOp::sigmoid, -4, 4, 0},
                        {UnaryOp::tanh, -3, 3, 0},         {UnaryOp::silu, -4, 4, 0},
                        {UnaryOp::gelu, -4, 4, 0},         {UnaryOp::softplus, -4, 4, 0},
                        {UnaryOp::relu, -2, 2, 0},         {UnaryOp::abs, -2, 2, 0},
                        {UnaryOp::pow, 0.2, 3, 2.5},       {UnaryOp::add_scalar, -2, 2, 0.75},
                        {UnaryOp::mul_scalar, -2, 2, -1.5}};
  Generator gen(3);
  for (const Case& c : cases) {
    for (DType dtype : kFloating) {
      const std::string name =
          fmt::format("unary op {} ({})", static_cast<int>(c.op), dtype_name(dtype));
      const OpFn fn = [&](const std::vector<Tensor>& in) { return unary(c.op, in[0], c.param); };
      // 4099 elements: vector loads plus a tail; the narrowed copy starts one element in, so
      // its pointer is misaligned and the scalar path runs.
      const Tensor x = uniform(gen, {4099}, c.lo, c.hi, dtype);
      check_against_cpu(name, {x}, fn, tolerance_for(dtype), gen);
      const OpFn shifted = [&](const std::vector<Tensor>& in) {
        return unary(c.op, in[0].narrow(0, 1, 4098), c.param);
      };
      check_against_cpu(name + " misaligned", {x}, shifted, tolerance_for(dtype), gen);
    }
  }
}

TEST_CASE("binary ops with broadcasting and their gradients match the CPU", "[cuda]") {
  Generator gen(4);
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    for (DType dtype : kFloating) {
      const std::string name =
          fmt::format("binary op {} ({})", static_cast<int>(op), dtype_name(dtype));
      const OpFn fn = [op](const std::vector<Tensor>& in) { return binary(op, in[0], in[1]); };
      // b stays away from 0 so that div is well conditioned.
      auto positive = [&](const Shape& shape) { return uniform(gen, shape, 0.5, 2.0, dtype); };
      // Same shape, dense (the vectorised path).
      check_against_cpu(name + " dense", {normal(gen, {1000, 33}, dtype), positive({1000, 33})}, fn,
                        tolerance_for(dtype), gen);
      // Broadcast on both sides: [3, 1, 5, 7] (op) [4, 1, 7] -> [3, 4, 5, 7].
      check_against_cpu(name + " broadcast",
                        {normal(gen, {3, 1, 5, 7}, dtype), positive({4, 1, 7})}, fn,
                        tolerance_for(dtype), gen);
      // A transposed operand.
      const OpFn transposed = [op](const std::vector<Tensor>& in) {
        return binary(op, in[0].transpose(0, 1), in[1]);
      };
      check_against_cpu(name + " transposed", {normal(gen, {65, 40}, dtype), positive({40, 65})},
                        transposed, tolerance_for(dtype), gen);
      // The layouts around the selective scan: a [B, D, T] view of a [B, T, D] tensor against a
      // dense one, both operands transposed, and a transposed operand against a per-channel
      // vector.
      const OpFn mixed = [op](const std::vector<Tensor>& in) {
        return binary(op, in[0].transpose(1, 2), in[1]);
      };
      check_against_cpu(name + " [B, T, D] view against [B, D, T]",
                        {normal(gen, {3, 70, 40}, dtype), positive({3, 40, 70})}, mixed,
                        tolerance_for(dtype), gen);
      const OpFn both = [op](const std::vector<Tensor>& in) {
        return binary(op, in[0].transpose(1, 2), in[1].transpose(1, 2));
      };
      check_against_cpu(name + " both transposed",
                        {normal(gen, {3, 70, 40}, dtype), positive({3, 70, 40})}, both,
                        tolerance_for(dtype), gen);
      check_against_cpu(
          name + " transposed against a vector", {normal(gen, {2, 64, 33}, dtype), positive({64})},
          [op](const std::vector<Tensor>& in) { return binary(op, in[0].transpose(1, 2), in[1]); },
          tolerance_for(dtype), gen);
      // A vector repeated along leading dims, as either operand: a length that fills 16-byte
      // vectors and one that does not.
      check_against_cpu(name + " vector broadcast",
                        {normal(gen, {5, 9, 64}, dtype), positive({1, 9, 64})}, fn,
                        tolerance_for(dtype), gen);
      check_against_cpu(name + " vector broadcast first",
                        {normal(gen, {64}, dtype), positive({5, 9, 64})}, fn, tolerance_for(dtype),
                        gen);
      check_against_cpu(name + " odd vector broadcast",
                        {normal(gen, {5, 3, 7}, dtype), positive({7})}, fn, tolerance_for(dtype),
                        gen);
      // A column, one value per channel of a channel-major [B, C, T] tensor, as either operand:
      // runs that fill 16-byte vectors and runs that do not.
      check_against_cpu(name + " column broadcast",
                        {normal(gen, {3, 9, 64}, dtype), positive({9, 1})}, fn,
                        tolerance_for(dtype), gen);
      check_against_cpu(name + " column broadcast first",
                        {normal(gen, {9, 1}, dtype), positive({3, 9, 64})}, fn,
                        tolerance_for(dtype), gen);
      check_against_cpu(name + " odd column broadcast",
                        {normal(gen, {2, 5, 3, 7}, dtype), positive({5, 1, 1})}, fn,
                        tolerance_for(dtype), gen);
    }
  }
}

TEST_CASE("reductions and their gradients match the CPU", "[cuda]") {
  Generator gen(5);
  for (DType dtype : kFloating) {
    INFO("dtype " << dtype_name(dtype));
    const Tolerance tol = tolerance_for(dtype, kF32Long);
    const std::string suffix = fmt::format(" ({})", dtype_name(dtype));
    const Tensor x = normal(gen, {37, 50, 129}, dtype);
    check_against_cpu(
        "sum all" + suffix, {x}, [](const auto& in) { return sum(in[0]); }, tol, gen);
    check_against_cpu(
        "sum dims 0, 2" + suffix, {x},
        [](const auto& in) {
          return sum(in[0], {0, 2}, false);
        },
        tol, gen);
    check_against_cpu(
        "mean dim 1 keepdim" + suffix, {x}, [](const auto& in) { return mean(in[0], {1}, true); },
        tol, gen);
    check_against_cpu(
        "sum short rows" + suffix, {normal(gen, {5000, 3}, dtype)},
        [](const auto& in) { return sum(in[0], {1}, false); }, tol, gen);
    // One long row: the two-pass, segmented path.
    check_against_cpu(
        "sum long row" + suffix, {normal(gen, {(1 << 20) + 3}, dtype)},
        [](const auto& in) { return sum(in[0]); }, tol, gen);
    for (int64_t dim : {0, 1, 2}) {
      check_against_cpu(
          fmt::format("max dim {}{}", dim, suffix), {x},
          [dim](const auto& in) { return max(in[0], dim, false); }, tol, gen);
      CHECK(argmax(x.to(kCuda), dim).to_vector<int64_t>() == argmax(x, dim).to_vector<int64_t>());
    }
    const Tensor wide = normal(gen, {3, 300001}, dtype);  // segmented max with argmax
    check_against_cpu(
        "max long rows" + suffix, {wide}, [](const auto& in) { return max(in[0], 1, true); }, tol,
        gen);
    CHECK(argmax(wide.to(kCuda), 1).to_vector<int64_t>() == argmax(wide, 1).to_vector<int64_t>());
  }
  // Ties: the first maximum wins on both devices.
  const Tensor ties = Tensor::from_vector<float>({1, 3, 3, 0, 2, 2, 2, 1}, {2, 4});
  CHECK(argmax(ties.to(kCuda), 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
}

TEST_CASE("matmul in every layout and its gradients match the CPU", "[cuda]") {
  Generator gen(6);
  for (DType dtype : kFloating) {
    const Tolerance tol = tolerance_for(dtype, kF32Long);
    const std::string suffix = fmt::format(" ({})", dtype_name(dtype));
    auto mm = [](const auto& in) { return matmul(in[0], in[1]); };
    check_against_cpu("2-D" + suffix,
                      {normal(gen, {67, 129}, dtype), normal(gen, {129, 45}, dtype)}, mm, tol, gen);
    check_against_cpu("batched" + suffix,
                      {normal(gen, {3, 33, 64}, dtype), normal(gen, {3, 64, 17}, dtype)}, mm, tol,
                      gen);
    check_against_cpu("2-D weight shared over the batch" + suffix,
                      {normal(gen, {2, 5, 31, 40}, dtype), normal(gen, {40, 24}, dtype)}, mm, tol,
                      gen);
    check_against_cpu(
        "both operands transposed" + suffix,
        {normal(gen, {4, 40, 30}, dtype), normal(gen, {4, 20, 40}, dtype)},
        [](const auto& in) { return bmm(in[0].transpose(1, 2), in[1].transpose(1, 2)); }, tol, gen);
    check_against_cpu(
        "one operand transposed" + suffix,
        {normal(gen, {70, 50}, dtype), normal(gen, {70, 30}, dtype)},
        [](const auto& in) { return matmul(in[0].transpose(0, 1), in[1]); }, tol, gen);
    // Weights shared over a batch of transposed views, from the left and from the right (the
    // Mamba mixer's channel-major products; the weights' gradients summed by the GEMM).
    check_against_cpu(
        "weights shared over transposed views" + suffix,
        {normal(gen, {3, 40, 30}, dtype), normal(gen, {24, 30}, dtype),
         normal(gen, {16, 24}, dtype)},
        [](const auto& in) {
          const Tensor y = matmul(in[1], in[0].transpose(1, 2));    // [3, 24, 40]
          return matmul(y.transpose(1, 2), in[2].transpose(0, 1));  // [3, 40, 16]
        },
        tol, gen);
    // A batch stride of 0: one matrix expanded over the batch, read without a copy.
    check_against_cpu(
        "expanded operand" + suffix,
        {normal(gen, {3, 16, 24}, dtype), normal(gen, {1, 24, 8}, dtype)},
        [](const auto& in) {
          return bmm(in[0], in[1].expand({3, 24, 8}));
        },
        tol, gen);
  }
}

TEST_CASE("TF32 is opt-in for f32 matmul", "[cuda]") {
  REQUIRE_FALSE(cuda::allow_tf32());
  Generator gen(7);
  const Tensor a = normal(gen, {256, 512}, DType::f32), b = normal(gen, {512, 128}, DType::f32);
  const Tensor expected = matmul(a, b);
  cuda::set_allow_tf32(true);
  const Tensor fast = matmul(a.to(kCuda), b.to(kCuda));
  cuda::set_allow_tf32(false);
  require_close(fast, expected, {1e-2, 1e-2}, "tf32 matmul");
  require_close(matmul(a.to(kCuda), b.to(kCuda)), expected, kF32Long, "f32 matmul");
}

TEST_CASE("every registered op passes gradcheck on CUDA", "[cuda]") {
  size_t checked = 0;
  std::vector<std::string> skipped;
  for (const GradcheckCase& c : registered_ops()) {
    if (!c.cuda) {
      skipped.push_back(c.name);
      continue;
    }
    const GradcheckResult r = gradcheck(c, kCuda);
    INFO(c.name << ": max abs err " << r.max_abs_err << ", max rel err " << r.max_rel_err << " "
                << r.error);
    CHECK(r.passed);
    ++checked;
  }
  std::ostringstream names;
  for (const std::string& name : skipped) names << name << ' ';
  INFO("ops without a CUDA kernel: " << names.str());
  CHECK(checked >= 20);
}

TEST_CASE("a steady training loop makes no cudaMalloc after its first step", "[cuda]") {
  Generator gen(8);
  Tensor w = Tensor::randn({512, 256}, gen, DType::f32, kCuda) * 0.05;
  w = w.detach();
  w.set_requires_grad(true);
  auto step = [&] {
    const Tensor x = Tensor::randn({64, 512}, gen, DType::f32, kCuda);
    sum(silu(matmul(x, w)) * 0.5).backward();
    w.zero_grad();
  };
  step();
  const size_t mallocs_after_first = cuda::allocator_stats().malloc_calls;
  const size_t in_use_after_first = cuda::allocator_stats().in_use_bytes;
  for (int i = 1; i < 50; ++i) step();
  const cuda::AllocatorStats stats = cuda::allocator_stats();
  CHECK(stats.malloc_calls == mallocs_after_first);
  CHECK(stats.in_use_bytes == in_use_after_first);
  CHECK(stats.peak_in_use_bytes >= stats.in_use_bytes);
  CHECK(stats.reserved_bytes >= stats.in_use_bytes);
}

TEST_CASE("empty_cache returns cached blocks and keeps live ones", "[cuda]") {
  { const Tensor scratch = Tensor::empty({3 << 20}, DType::f32, kCuda); }
  REQUIRE(cuda::allocator_stats().cached_blocks > 0);
  const Tensor kept = Tensor::ones({1000}, DType::f32, kCuda);
  cuda::empty_cache();
  const cuda::AllocatorStats stats = cuda::allocator_stats();
  CHECK(stats.cached_blocks == 0);
  CHECK(stats.reserved_bytes == stats.in_use_bytes);
  CHECK(kept.to_vector<float>() == std::vector<float>(1000, 1.0f));
  cuda::reset_peak_stats();
  CHECK(cuda::allocator_stats().peak_in_use_bytes == cuda::allocator_stats().in_use_bytes);
}

TEST_CASE("bad calls give readable errors", "[cuda]") {
  // 2^48 floats = 1 PiB.
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t{1} << 48}, DType::f32, kCuda),
                      Contains("out of memory") && Contains("1125899906842624 bytes"));
  const Tensor on_gpu = Tensor::ones({4, 4}, DType::f32, kCuda);
  const Tensor on_cpu = Tensor::ones({4, 4}, DType::f32);
  REQUIRE_THROWS_WITH(on_gpu + on_cpu,
                      Contains("device mismatch") && Contains("cuda:0") && Contains("cpu"));
  REQUIRE_THROWS_WITH(matmul(on_cpu, on_gpu), Contains("device mismatch"));
  const int count = cuda::device_count();
  REQUIRE_THROWS_WITH(Tensor::ones({2}, DType::f32, Device::cuda(count + 2)),
                      Contains(fmt::format("device {} requested, {} visible", count + 2, count)));
  // The device is still usable afterwards.
  CHECK((on_gpu + on_gpu).to_vector<float>() == std::vector<float>(16, 2.0f));
}
