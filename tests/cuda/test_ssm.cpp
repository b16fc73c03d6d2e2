// CUDA kernels of the SSM ops against the CPU kernels on the same inputs: selective_scan (forward,
// gradients of every input, last state, one-token step), the cross-layer read-out,
// causal_conv1d and DenseMamba's fused output, at Mamba's sizes (batch 2, channels 2048, length
// 2048, N 16) and at odd small sizes that hit the edge paths (odd channel count, partial chunks, N
// above the kernels' limit). Errors are measured relative to the largest magnitude of the reference
// tensor.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "autograd/grad_mode.hpp"
#include "cuda/kernels_ssm.hpp"
#include "ops/causal_conv1d.hpp"
#include "ops/cross_layer_readout.hpp"
#include "ops/dense_output.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/selective_scan.hpp"

using namespace dssm;

namespace {

// max |got - want| / max |want|, both read back as f64.
double relative_error(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::abs(g[i] - w[i]));
    scale = std::max(scale, std::abs(w[i]));
  }
  return err / std::max(scale, 1e-30);
}

// Mamba-like operands in f32 on the CPU: A[c, n] = -(n + 1), dt = softplus(delta + bias) with the
// bias the inverse softplus of a dt in [1e-3, 1e-1].
ScanInputs mamba_operands(Generator& g, int64_t batch, int64_t channels, int64_t length,
                          int64_t N) {
  std::vector<float> a(static_cast<size_t>(channels * N));
  for (size_t i = 0; i < a.size(); ++i) a[i] = -static_cast<float>(i % N + 1);
  const Tensor dt0 = exp(Tensor::rand({channels}, g) * std::log(100.0) + std::log(1e-3));
  return {.u = Tensor::randn({batch, channels, length}, g),
          .delta = Tensor::randn({batch, channels, length}, g) * 0.5,
          .A = Tensor::from_vector(a, {channels, N}),
          .B = Tensor::randn({batch, N, length}, g),
          .C = Tensor::randn({batch, N, length}, g),
          .D = Tensor::ones({channels}),
          .z = Tensor::randn({batch, channels, length}, g),
          .delta_bias = log(exp(dt0) - 1.0),
          .delta_softplus = true};
}

Tensor placed(const Tensor& t, DType dtype, Device device) {
  return t.defined() ? t.to(dtype).to(device).detach().set_requires_grad(true) : t;
}

struct ScanRun {
  Tensor y, last_state;
  std::vector<Tensor> grads;  // u, delta, A, B, C, D, z, delta_bias
};

// Forward (with the last state) and backward of sum(y * w) + sum(last_state * w_last).
ScanRun run_scan(const ScanInputs& host, DType dtype, Device device, const Tensor& w,
                 const Tensor& w_last) {
  const ScanInputs in{placed(host.u, dtype, device),
                      placed(host.delta, dtype, device),
                      placed(host.A, dtype, device),
                      placed(host.B, dtype, device),
                      placed(host.C, dtype, device),
                      placed(host.D, dtype, device),
                      placed(host.z, dtype, device),
                      placed(host.delta_bias, dtype, device),
                      host.delta_softplus};
  const ScanResult r = selective_scan(in, true);
  // The state is kept in f32 even for bf16 inputs: add the two terms in f32.
  const Tensor loss = sum(r.y * w.to(dtype).to(device)).to(DType::f32) +
                      sum(r.last_state * w_last.to(r.last_state.dtype()).to(device)).to(DType::f32);
  loss.backward();
  ScanRun run{r.y.to(Device::cpu()), r.last_state.to(Device::cpu()), {}};
  for (const Tensor& t : {in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias}) {
    run.grads.push_back(t.defined() ? t.grad().to(Device::cpu()) : Tensor());
  }
  return run;
}

void compare_scan(const ScanInputs& host, DType dtype, double tol, Generator& g) {
  const Tensor w = Tensor::randn(host.u.shape(), g);
  const Tensor w_last = Tensor::randn({host.u.size(0), host.u.size(1), host.A.size(1)}, g);
  const ScanRun gpu = run_scan(host, dtype, Device::cuda(), w, w_last);
  const ScanRun cpu = run_scan(host, dtype, Device::cpu(), w, w_last);
  CHECK(relative_error(gpu.y, cpu.y) < tol);
  CHECK(relative_error(gpu.last_state, cpu.last_state) < tol);
  const char* names[] = {"du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"};
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    if (!cpu.grads[i].defined()) continue;
    INFO(names[i]);
    CHECK(relative_error(gpu.grads[i], cpu.grads[i]) < tol);
  }
}

}  // namespace

TEST_CASE("CUDA selective_scan equals the CPU kernel at Mamba's sizes", "[cuda][ssm]") {
  Generator g(101);
  const ScanInputs host = mamba_operands(g, 2, 2048, 2048, 16);
  SECTION("f32") {
    compare_scan(host, DType::f32, 1e-4, g);
  }
  SECTION("bf16") {
    compare_scan(host, DType::bf16, 3e-2, g);
  }
}

TEST_CASE("CUDA selective_scan at odd sizes, without gate and bias, and in f64", "[cuda][ssm]") {
  Generator g(102);
  // 5 channels (odd: no pairing of half warps), length 77 (a partial chunk), N 7 (idle lanes).
  ScanInputs host = mamba_operands(g, 3, 5, 77, 7);
  compare_scan(host, DType::f64, 1e-12, g);
  host.z = Tensor(), host.delta_bias = Tensor(), host.D = Tensor(), host.delta_softplus = false;
  host.delta = Tensor::rand(host.u.shape(), g) * 0.2;
  compare_scan(host, DType::f32, 1e-4, g);
}

TEST_CASE("CUDA selective_scan with partial channel blocks and partial chunks", "[cuda][ssm]") {
  Generator g(107);
  // 70 channels: two full blocks of 32 and one of 6. Length 1000 (16-byte rows, the last chunk of
  // 32 steps holds 8) and 203 (rows not 16-byte aligned: the scalar path). N 16 and 5.
  for (auto [length, N] : {std::pair<int64_t, int64_t>{1000, 16}, {203, 16}, {203, 5}}) {
    INFO("length " << length << ", N " << N);
    const ScanInputs host = mamba_operands(g, 3, 70, length, N);
    compare_scan(host, DType::f32, 1e-4, g);
    compare_scan(host, DType::bf16, 3e-2, g);
  }
}

TEST_CASE("CUDA selective_scan on a grid of several waves", "[cuda][ssm]") {
  // 12 x 2048 channels make 768 blocks of 32 channels: more than fit on the GPU at once (3 or 4
  // per SM for the backward, the 4-blocks build here), so blocks start as others finish.
  Generator g(110);
  compare_scan(mamba_operands(g, 12, 2048, 40, 16), DType::f32, 1e-4, g);
}

TEST_CASE("CUDA selective_scan gives the same result when run twice", "[cuda][ssm]") {
  // A race (a missing barrier, a read of unwritten memory) shows as a result that moves between
  // runs; dB, dC, dA, dD, ddelta_bias are atomic sums, equal up to the order of the additions.
  Generator g(108);
  const ScanInputs host = mamba_operands(g, 2, 96, 500, 16);
  const Tensor w = Tensor::randn(host.u.shape(), g), w_last = Tensor::randn({2, 96, 16}, g);
  const ScanRun first = run_scan(host, DType::f32, Device::cuda(), w, w_last);
  const ScanRun second = run_scan(host, DType::f32, Device::cuda(), w, w_last);
  CHECK(relative_error(first.y, second.y) == 0);
  CHECK(relative_error(first.last_state, second.last_state) == 0);
  for (size_t i = 0; i < first.grads.size(); ++i) {
    INFO("gradient " << i);
    CHECK(relative_error(first.grads[i], second.grads[i]) < 1e-6);
  }
}

TEST_CASE("CUDA selective_scan backward without the forward's chunk states computes them",
          "[cuda][ssm]") {
  // The op's forward keeps the state entering each chunk for its backward; a backward given none
  // runs the forward kernel for them first. Both must give the same gradients.
  Generator g(109);
  for (int64_t length : {500, 77}) {
    INFO("length " << length);
    const ScanInputs host = mamba_operands(g, 2, 96, length, 16);
    auto cuda_f32 = [](const Tensor& t) { return t.to(Device::cuda()); };
    const ScanInputs in{cuda_f32(host.u), cuda_f32(host.delta),      cuda_f32(host.A),
                        cuda_f32(host.B), cuda_f32(host.C),          cuda_f32(host.D),
                        cuda_f32(host.z), cuda_f32(host.delta_bias), true};
    const Tensor y = Tensor::empty(in.u.shape(), DType::f32, Device::cuda());
    const Tensor entry = cuda::selective_scan_chunk_entry(in);
    cuda::selective_scan_forward({{in, y, Tensor(), entry}});
    const Tensor grad_y = Tensor::randn(in.u.shape(), g).to(Device::cuda());
    std::vector<std::vector<Tensor>> grads;
    for (const Tensor& given : {entry, Tensor()}) {
      auto zeros = [](const Tensor& like) {
        return Tensor::zeros(like.shape(), DType::f32, Device::cuda());
      };
      const ScanGradients out{zeros(in.u), zeros(in.delta), zeros(in.A), zeros(in.B),
                              zeros(in.C), zeros(in.D),     zeros(in.z), zeros(in.delta_bias)};
      cuda::selective_scan_backward({{in, grad_y, Tensor(), out, given}});
      grads.push_back(
          {out.du, out.ddelta, out.dA, out.dB, out.dC, out.dD, out.dz, out.ddelta_bias});
    }
    for (size_t i = 0; i < grads[0].size(); ++i) {
      INFO("gradient " << i);
      CHECK(relative_error(grads[1][i].to(Device::cpu()), grads[0][i].to(Device::cpu())) < 1e-6);
    }
  }
}

TEST_CASE("CUDA selective_scan with N above the kernel's limit falls back correctly",
          "[cuda][ssm]") {
  Generator g(103);
  compare_scan(mamba_operands(g, 2, 6, 40, 24), DType::f32, 1e-5, g);
}

TEST_CASE("CUDA selective_scan_step equals the CPU step", "[cuda][ssm]") {
  Generator g(104);
  const ScanInputs host = mamba_operands(g, 2, 2048, 3, 16);
  NoGradGuard no_grad;
  const Tensor state_gpu = Tensor::zeros({2, 2048, 16}, DType::f32, Device::cuda());
  const Tensor state_cpu = Tensor::zeros({2, 2048, 16});
  for (int64_t t = 0; t < 3; ++t) {
    auto at = [t](const Tensor& x, Device d) { return x.select(2, t).contiguous().to(d); };
    auto step = [&](Device d, const Tensor& state) {
      return selective_scan_step(
          {at(host.u, d), at(host.delta, d), host.A.to(d), at(host.B, d), at(host.C, d),
           host.D.to(d), at(host.z, d), host.delta_bias.to(d), true},
          state);
    };
    CHECK(relative_error(step(Device::cuda(), state_gpu).to(Device::cpu()),
                         step(Device::cpu(), state_cpu)) < 1e-5);
  }
  CHECK(relative_error(state_gpu.to(Device::cpu()), state_cpu) < 1e-5);
}

// 2 sources at a Mamba-like width, and 10 (more than one launch of the kernels holds) at odd small
// sizes; every other source with delta_bias.
TEST_CASE("CUDA cross_layer_readout equals the CPU read-out, forward and backward", "[cuda][ssm]") {
  Generator g(105);
  for (auto [sources, channels, length] : {std::tuple{2, 256, 300}, std::tuple{10, 40, 77}}) {
    INFO(sources << " sources, " << channels << " channels, length " << length);
    std::vector<ScanInputs> s;
    for (int j = 0; j < sources; ++j) s.push_back(mamba_operands(g, 2, channels, length, 16));
    const Tensor C = Tensor::randn({2, 16, length}, g), w = Tensor::randn({2, channels, length}, g);
    std::vector<std::vector<Tensor>> grads;
    std::vector<Tensor> outputs;
    for (Device d : {Device::cuda(), Device::cpu()}) {
      auto p = [d](const Tensor& t) { return placed(t, DType::f32, d); };
      std::vector<ScanSource> placed_sources;
      for (int j = 0; j < sources; ++j) {
        placed_sources.push_back({p(s[j].u), p(s[j].delta), p(s[j].A), p(s[j].B),
                                  j % 2 == 0 ? p(s[j].delta_bias) : Tensor(), true});
      }
      const Tensor c = p(C);
      const std::vector<Tensor> r = cross_layer_readout(placed_sources, c);
      Tensor total = r[0];
      for (int j = 1; j < sources; ++j) total = total + r[j] * (1.0 + 0.1 * j);
      sum(total * w.to(d)).backward();
      outputs.push_back(total.to(Device::cpu()));
      grads.push_back({});
      for (const ScanSource& src : placed_sources) {
        for (const Tensor& t : {src.u, src.delta, src.A, src.B, src.delta_bias}) {
          if (t.defined()) grads.back().push_back(t.grad().to(Device::cpu()));
        }
      }
      grads.back().push_back(c.grad().to(Device::cpu()));
    }
    CHECK(relative_error(outputs[0], outputs[1]) < 1e-4);
    for (size_t i = 0; i < grads[0].size(); ++i) {
      INFO("gradient " << i);
      CHECK(relative_error(grads[0][i], grads[1][i]) < 1e-4);
    }
  }
}

namespace {

// A DenseMamba-like chain of dense_readout_pass: layer 0 with D and a gate, then layers 1 .. K,
// layer l reading every shallower layer (so layer 0 has K readers). Returns each layer's output
// plus its read-outs, and the gradients of every operand of sum_l sum(out_l * w_l).
struct ChainRun {
  std::vector<Tensor> outputs, grads;
};
ChainRun run_chain(const std::vector<ScanInputs>& host, DType dtype, Device device,
                   const std::vector<Tensor>& w) {
  const int64_t K = std::ssize(host) - 1;
  std::vector<ScanInputs> in;
  for (const ScanInputs& h : host) {
    auto p = [&](const Tensor& t) { return placed(t, dtype, device); };
    in.push_back({p(h.u), p(h.delta), p(h.A), p(h.B), p(h.C), p(h.D), p(h.z), p(h.delta_bias),
                  h.delta_softplus});
  }
  std::vector<DenseReadouts> passes;
  ChainRun run;
  Tensor loss = Tensor::zeros({}, DType::f32, device);
  for (int64_t l = 0; l <= K; ++l) {
    std::vector<StateHandle> sources;
    for (int64_t j = l - 1; j >= 0; --j) sources.push_back(passes[j].handles[l - j - 1]);
    passes.push_back(dense_readout_pass(in[l], sources, K - l));
    Tensor out = passes.back().own;
    for (size_t j = 0; j < sources.size(); ++j) out = out + passes.back().readouts[j] * (0.5 + j);
    loss = loss + sum(out * w[l].to(dtype).to(device)).to(DType::f32);
    run.outputs.push_back(out.to(Device::cpu()));
  }
  loss.backward();
  for (const ScanInputs& i : in) {
    for (const Tensor& t : {i.u, i.delta, i.A, i.B, i.C, i.D, i.z, i.delta_bias}) {
      if (t.defined()) run.grads.push_back(t.grad().to(Device::cpu()));
    }
  }
  return run;
}

}  // namespace

TEST_CASE("CUDA dense_readout_pass equals the CPU pass, forward and backward", "[cuda][ssm]") {
  Generator g(106);
  // (readers of layer 0, channels, length, dtype, tolerance): 5 readers are more than one launch
  // of the backward joins (4 in f32, fewer in f64), which splits them.
  for (auto [K, channels, length, dtype, tol] :
       {std::tuple{2, 256, 300, DType::f32, 1e-4}, std::tuple{2, 256, 300, DType::bf16, 3e-2},
        std::tuple{5, 40, 77, DType::f32, 1e-4}, std::tuple{5, 40, 77, DType::f64, 1e-9}}) {
    INFO(K << " deeper layers, " << channels << " channels, length " << length << ", "
           << dtype_name(dtype));
    std::vector<ScanInputs> layers;
    std::vector<Tensor> w;
    for (int l = 0; l <= K; ++l) {
      layers.push_back(mamba_operands(g, 2, channels, length, 16));
      if (l > 0) layers.back().D = Tensor(), layers.back().z = Tensor();
      w.push_back(Tensor::randn({2, channels, length}, g));
    }
    const ChainRun gpu = run_chain(layers, dtype, Device::cuda(), w);
    const ChainRun cpu = run_chain(layers, dtype, Device::cpu(), w);
    for (size_t l = 0; l < cpu.outputs.size(); ++l) {
      INFO("layer " << l);
      CHECK(relative_error(gpu.outputs[l], cpu.outputs[l]) < tol);
    }
    REQUIRE(gpu.grads.size() == cpu.grads.size());
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      INFO("gradient " << i);
      CHECK(relative_error(gpu.grads[i], cpu.grads[i]) < tol);
    }
  }
}

TEST_CASE("CUDA causal_conv1d equals the CPU kernel in f64 at odd widths and lengths",
          "[cuda][ssm]") {
  // Lengths across the kernels' tiles of 2048 steps (halos on both sides of a tile boundary),
  // shorter than a tile and shorter than the width, a multiple of 8 (16-byte vector access) and
  // not; widths 1 to the kernels' largest; no bias.
  Generator g(107);
  for (int64_t width : {1, 2, 3, 4, 8}) {
    for (int64_t length : {1, 3, 37, 2049, 4096, 4100}) {
      for (bool with_bias : {false, true}) {
        const bool silu = (width + length) % 2 == 1 || with_bias;
        INFO("width " << width << ", length " << length << ", bias " << with_bias << ", silu "
                      << silu);
        const Tensor x = Tensor::randn({2, 3, length}, g, DType::f64);
        const Tensor w = Tensor::randn({3, width}, g, DType::f64) * 0.5;
        const Tensor bias = with_bias ? Tensor::randn({3}, g, DType::f64) : Tensor();
        const Tensor dy = Tensor::randn({2, 3, length}, g, DType::f64);
        std::vector<std::vector<Tensor>> results;
        for (Device d : {Device::cuda(), Device::cpu()}) {
          const Tensor xx = placed(x, DType::f64, d), ww = placed(w, DType::f64, d),
                       bb = placed(bias, DType::f64, d);
          const Tensor y = causal_conv1d(xx, ww, bb, silu);
          sum(y * dy.to(d)).backward();
          results.push_back(
              {y.to(Device::cpu()), xx.grad().to(Device::cpu()), ww.grad().to(Device::cpu())});
          if (with_bias) results.back().push_back(bb.grad().to(Device::cpu()));
        }
        for (size_t i = 0; i < results[0].size(); ++i) {
          INFO("tensor " << i << " (y, dx, dweight, dbias)");
          CHECK(relative_error(results[0][i], results[1][i]) < 1e-12);
        }
      }
    }
  }
}

TEST_CASE("CUDA causal_conv1d equals the CPU kernel, forward, backward and step", "[cuda][ssm]") {
  Generator g(106);
  const Tensor x = Tensor::randn({2, 2048, 2048}, g), w = Tensor::randn({2048, 4}, g) * 0.5;
  const Tensor bias = Tensor::randn({2048}, g), dy = Tensor::randn({2, 2048, 2048}, g);
  for (auto [dtype, tol] : {std::pair{DType::f32, 1e-4}, std::pair{DType::bf16, 3e-2}}) {
    for (bool silu : {false, true}) {
      INFO("dtype " << dtype_name(dtype) << ", silu " << silu);
      std::vector<std::vector<Tensor>> results;
      for (Device d : {Device::cuda(), Device::cpu()}) {
        const Tensor xx = placed(x, dtype, d), ww = placed(w, dtype, d),
                     bb = placed(bias, dtype, d);
        const Tensor y = causal_conv1d(xx, ww, bb, silu);
        sum(y * dy.to(dtype).to(d)).backward();
        results.push_back({y.to(Device::cpu()), xx.grad().to(Device::cpu()),
                           ww.grad().to(Device::cpu()), bb.grad().to(Device::cpu())});
      }
      for (size_t i = 0; i < results[0].size(); ++i) {
        INFO("tensor " << i << " (y, dx, dweight, dbias)");
        CHECK(relative_error(results[0][i], results[1][i]) < tol);
      }
    }
  }
  NoGradGuard no_grad;
  const Tensor xs = Tensor::randn({2, 2048, 5}, g);
  const Tensor full = causal_conv1d(xs, w, bias, true);
  const Tensor state = Tensor::zeros({2, 2048, 3}, DType::f32, Device::cuda());
  for (int64_t t = 0; t < 5; ++t) {
    const Tensor y_t = causal_conv1d_step(xs.select(2, t).to(Device::cuda()), state,
                                          w.to(Device::cuda()), bias.to(Device::cuda()), true);
    CHECK(relative_error(y_t.to(Device::cpu()), full.select(2, t)) < 1e-5);
  }
}

namespace {

// dense_mamba_output on `device`: y and the gradients of own, x, D, z, the gate (if any) and each
// read-out, read back to the CPU.
std::vector<Tensor> dense_output_run(const std::vector<Tensor>& operands, int64_t readouts,
                                     bool gated, const Tensor& dy, DType dtype, Device device) {
  std::vector<Tensor> in;  // own, x, D, z, gate, r_1 .. r_m
  for (const Tensor& t : operands) in.push_back(placed(t, dtype, device));
  const std::vector<Tensor> rs(in.begin() + 5, in.begin() + 5 + readouts);
  const Tensor gate = gated ? in[4] : Tensor();
  const Tensor y = dense_mamba_output(in[0], rs, gate, in[1], in[2], in[3]);
  sum(y * dy.to(dtype).to(device)).backward();
  std::vector<Tensor> out{y.to(Device::cpu())};
  for (int64_t i = 0; i < 5 + readouts; ++i) {
    if (i != 4 || gated) out.push_back(in[static_cast<size_t>(i)].grad().to(Device::cpu()));
  }
  return out;
}

void check_dense_output(Generator& g, const Shape& rows, int64_t readouts, bool gated, DType dtype,
                        double tol) {
  INFO(readouts << " read-outs, gated " << gated << ", length " << rows[2] << ", "
                << dtype_name(dtype));
  std::vector<Tensor> operands{
      Tensor::randn(rows, g, DType::f64), Tensor::randn(rows, g, DType::f64),
      Tensor::randn({rows[1]}, g, DType::f64), Tensor::randn(rows, g, DType::f64),
      Tensor::randn(rows, g, DType::f64)};
  for (int64_t i = 0; i < readouts; ++i) operands.push_back(Tensor::randn(rows, g, DType::f64));
  const Tensor dy = Tensor::randn(rows, g, DType::f64);
  const std::vector<Tensor> gpu =
      dense_output_run(operands, readouts, gated, dy, dtype, Device::cuda());
  const std::vector<Tensor> cpu =
      dense_output_run(operands, readouts, gated, dy, dtype, Device::cpu());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("tensor " << i << " (y, then the gradients of own, x, D, z, [gate,] r_1 ..)");
    CHECK(relative_error(gpu[i], cpu[i]) < tol);
  }
}

}  // namespace

TEST_CASE("CUDA dense_mamba_output equals the CPU kernel in f64 at odd lengths", "[cuda][ssm]") {
  // Lengths shorter than a thread's 8 steps, across the kernels' tiles of 2048 steps, a multiple
  // of 8 (16-byte vector access) and not; more read-outs than the kernels take at once (10 > 8).
  Generator g(131);
  for (int64_t length : {1, 37, 2049, 4096}) {
    for (int64_t readouts : {0, 2, 10}) {
      for (bool gated : {false, true}) {
        check_dense_output(g, {2, 3, length}, readouts, gated, DType::f64, 1e-12);
      }
    }
  }
}

TEST_CASE("CUDA dense_mamba_output equals the CPU kernel at DenseMamba's sizes", "[cuda][ssm]") {
  // DenseMamba-360M's layer: d_inner 2048 channels, 4 read-outs, one gate (channels cut to 512
  // to keep the CPU side short).
  Generator g(132);
  check_dense_output(g, {2, 512, 2048}, 4, true, DType::f32, 1e-4);
  check_dense_output(g, {2, 512, 2048}, 4, true, DType::bf16, 3e-2);
}
