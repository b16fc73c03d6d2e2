// ssm_bench: forward and forward + backward time of selective_scan (with gate z, delta bias and
// softplus, as in the Mamba block) and causal_conv1d (width 4, bias, silu) against the
// bytes-moved floor. Defaults: Mamba-360M's shapes on CUDA (batch 8, length 2048, d_inner 2048,
// N 16, bf16); a small problem on the CPU (batch 1, length 512, channels 256, N 16, f32).
//
//   ssm_bench [--device cpu|cuda] [--dtype bf16|f32] [--batch B] [--length L] [--channels D]
//             [--state N] [--sources M] [--iters N]
//
// Bytes floor: every input read once and every output written once. Forward of the scan reads
// u, delta, z, B, C and writes y; backward reads those and dy and writes du, ddelta, dz, dB, dC
// (A, D, bias and their gradients are negligible). The convolution reads x (and dy) and writes
// y (and dx). Floor time at 3.0 TB/s on CUDA; on the CPU the achieved GB/s is printed.
// Saved activations: selective_scan keeps its inputs for backward (u, delta, z, B, C: (3 D + 2 N)
// elements per token) and, on CUDA, the state entering every chunk of 32 steps (D N / 32 f32 per
// token), never the D x N states per token a per-step autograd would keep.
// DenseMamba's cross-layer read-out of --sources M layers (default 4, DenseMamba-360M's m) by one
// C: the one-pass op (cross_layer_readout, all M scans in one launch each way, dC summed inside)
// against M separate selective_scan calls (dC summed by autograd), timed side by side; and 2 M + 1
// layers chained as DenseMamba runs them, by one-pass read-outs or by dense_readout_pass.
// DenseMamba's output y = (own + g sum_i r_i + D x) silu(z) of M read-outs: the fused op
// (dense_mamba_output) against the same math in elementwise ops, side by side. Its floor: forward
// reads own, the M read-outs, g, x, z and writes y; backward reads those and dy and writes the
// gradients of own, g, x, z and one for all read-outs.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "autograd/graph.hpp"
#include "bench/flags.hpp"
#include "bench/scan_floor.hpp"
#include "cuda/backend.hpp"
#include "ops/causal_conv1d.hpp"
#include "ops/cross_layer_readout.hpp"
#include "ops/dense_output.hpp"
#include "ops/elementwise.hpp"
#include "ops/selective_scan.hpp"

using namespace dssm;

namespace {

struct Config {
  Device device = Device::cpu();
  DType dtype = DType::f32;
  int64_t batch = 0, length = 0, channels = 0, state = 16, sources = 4, iters = 0;
};

Config parse(int argc, char** argv) {
  const bench::Flags f(argc, argv, "ssm_bench",
                       {"--batch", "--length", "--channels", "--state", "--sources", "--iters"});
  return {.device = f.device,
          .dtype = f.dtype,
          .batch = f.integer("--batch", 1, 8),
          .length = f.integer("--length", 512, 2048),
          .channels = f.integer("--channels", 256, 2048),
          .state = f.integer("--state", 16, 16),
          .sources = f.integer("--sources", 4, 4),
          .iters = f.integer("--iters", 3, 10)};
}

// Median wall time of `fn` over `iters` runs after one warm-up, synchronising a CUDA device.
double median_seconds(const Config& c, const std::function<void()>& fn) {
  auto sync = [&] {
    if (c.device.is_cuda()) cuda::synchronize();
  };
  std::vector<double> times;
  for (int64_t it = -1; it < c.iters; ++it) {
    sync();
    const auto start = std::chrono::steady_clock::now();
    fn();
    sync();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (it >= 0) times.push_back(s);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void report(const Config& c, const char* what, double seconds, double bytes) {
  const std::string floor =
      c.device.is_cuda()
          ? fmt::format("{:10.3f} {:9.1f}x", bytes / 3.0e12 * 1e3, seconds / (bytes / 3.0e12))
          : fmt::format("{:>10} {:>10}", "-", "-");
  fmt::print("{:<28} {:10.3f} {} {:10.1f} {:12.1f}\n", what, seconds * 1e3, floor, bytes / 1e6,
             bytes / seconds / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse(argc, argv);
  if (c.device.is_cuda()) cuda::require_device(c.device.index);
  const double elem = static_cast<double>(dtype_size(c.dtype));
  const double tokens = static_cast<double>(c.batch * c.length);
  const double D = static_cast<double>(c.channels), N = static_cast<double>(c.state);
  const double accum = c.dtype == DType::f64 ? 8 : 4;  // dB, dC are accumulated in f32 (f64)
  fmt::print("selective_scan and causal_conv1d: batch {}, length {}, channels {}, N {}, {} on {}\n",
             c.batch, c.length, c.channels, c.state, dtype_name(c.dtype), c.device.str());
  const double chunk_states = c.device.is_cuda() ? D * N / 32 * accum : 0;
  fmt::print(
      "saved activations per token and layer: scan {:.0f} bytes (u, delta, z, B, C: {:.0f}; "
      "chunk entry states: {:.0f}), conv {:.0f} bytes (x); materialised states would be {:.0f} "
      "bytes\n",
      (3 * D + 2 * N) * elem + chunk_states, (3 * D + 2 * N) * elem, chunk_states, D * elem,
      D * N * 4);
  fmt::print("{:<28} {:>10} {:>10} {:>10} {:>10} {:>12}\n", "", "ms", "floor ms", "of floor",
             "MB moved", "GB/s");

  Generator gen(5);
  const Shape seq{c.batch, c.channels, c.length}, states{c.batch, c.state, c.length};
  auto randn = [&](const Shape& s, double scale) {
    return (Tensor::randn(s, gen, DType::f32) * scale).to(c.dtype).to(c.device);
  };
  const Tensor u = randn(seq, 1), delta = randn(seq, 0.5), z = randn(seq, 1), dy = randn(seq, 1);
  const Tensor B = randn(states, 1), C = randn(states, 1);
  const Tensor A =
      (Tensor::rand({c.channels, c.state}, gen) * -15.0 - 1.0).to(c.dtype).to(c.device);
  const Tensor Dskip = Tensor::ones({c.channels}, c.dtype, c.device);
  const Tensor bias = (Tensor::randn({c.channels}, gen) - 4.0).to(c.dtype).to(c.device);

  auto scan = [&](bool grad) {
    const Tensor uu = grad ? u.detach().set_requires_grad() : u;
    const Tensor dd = grad ? delta.detach().set_requires_grad() : delta;
    const Tensor y = selective_scan(uu, dd, A, grad ? B.detach().set_requires_grad() : B,
                                    grad ? C.detach().set_requires_grad() : C, Dskip,
                                    grad ? z.detach().set_requires_grad() : z, bias, true);
    if (grad) y.backward(dy);
  };
  const bench::ScanBytes scan_bytes = bench::scan_bytes(tokens, D, N, elem, accum);
  const double scan_fwd_bytes = scan_bytes.forward, scan_bwd_bytes = scan_bytes.backward;
  report(c, "selective_scan forward", median_seconds(c, [&] { scan(false); }), scan_fwd_bytes);
  report(c, "selective_scan fwd+bwd", median_seconds(c, [&] { scan(true); }),
         scan_fwd_bytes + scan_bwd_bytes);

  // Cross-layer read-outs: M sources (u, delta, A, B, bias of their own) read by one C.
  std::vector<ScanSource> sources;
  std::vector<Tensor> dys;
  for (int64_t j = 0; j < c.sources; ++j) {
    sources.push_back({randn(seq, 1), randn(seq, 0.5), A, randn(states, 1), bias, true});
    dys.push_back(randn(seq, 1));
  }
  auto with_grad = [](const Tensor& t, bool grad) {
    return grad ? t.detach().set_requires_grad() : t;
  };
  auto readouts = [&](bool one_pass, bool grad) {
    std::vector<ScanSource> src;
    for (const ScanSource& s : sources) {
      src.push_back({with_grad(s.u, grad), with_grad(s.delta, grad), with_grad(s.A, grad),
                     with_grad(s.B, grad), with_grad(s.delta_bias, grad), true});
    }
    const Tensor cc = with_grad(C, grad);
    std::vector<Tensor> r;
    if (one_pass) {
      r = cross_layer_readout(src, cc);
    } else {
      for (const ScanSource& s : src) {
        r.push_back(
            selective_scan(s.u, s.delta, s.A, s.B, cc, Tensor(), Tensor(), s.delta_bias, true));
      }
    }
    if (grad) run_backward(r, dys, false);
  };
  const double M = static_cast<double>(c.sources);
  const double readout_fwd_bytes = tokens * (M * (3 * D + N) * elem + N * elem);
  const double readout_bwd_bytes =
      tokens * (M * (6 * D + N) * elem + N * elem + (M + 1) * N * accum);
  for (bool grad : {false, true}) {
    const double bytes = readout_fwd_bytes + (grad ? readout_bwd_bytes : 0);
    const double separate = median_seconds(c, [&] { readouts(false, grad); });
    const double one_pass = median_seconds(c, [&] { readouts(true, grad); });
    const char* pass = grad ? "fwd+bwd" : "forward";
    report(c, fmt::format("{} scans, {}", c.sources, pass).c_str(), separate, bytes);
    report(c, fmt::format("readout one pass, {}", pass).c_str(), one_pass, bytes);
    fmt::print("  one pass / separate scans: {:.3f}\n", one_pass / separate);
  }

  // DenseMamba's layers chained as the model runs them: layer l reads the min(l, M) shallower
  // layers' states with its C. As one-pass read-outs (cross_layer_readout of the layer's own scan
  // and its sources: every read-out walks its source backward) or as dense_readout_pass (one
  // reverse walk per layer, joined by its readers). Bytes: the read-outs' (pairs of reader and
  // source) plus the layers' own scans, as above.
  const int64_t layers = 2 * c.sources + 1;
  std::vector<ScanInputs> chain;
  int64_t pairs = 0;
  for (int64_t l = 0; l < layers; ++l) {
    chain.push_back({randn(seq, 1), randn(seq, 0.5), A, randn(states, 1), randn(states, 1),
                     Tensor(), Tensor(), bias, true});
    pairs += std::min(l, c.sources);
  }
  auto dense_chain = [&](bool passes, bool grad) {
    std::vector<ScanInputs> in;
    for (const ScanInputs& s : chain) {
      in.push_back({with_grad(s.u, grad), with_grad(s.delta, grad), with_grad(s.A, grad),
                    with_grad(s.B, grad), with_grad(s.C, grad), Tensor(), Tensor(),
                    with_grad(s.delta_bias, grad), true});
    }
    std::vector<DenseReadouts> done;
    std::vector<Tensor> outs;
    for (int64_t l = 0; l < layers; ++l) {
      std::vector<ScanSource> src;
      std::vector<StateHandle> handles;
      for (int64_t j = l - 1; j >= std::max<int64_t>(0, l - c.sources); --j) {
        src.push_back({in[j].u, in[j].delta, in[j].A, in[j].B, in[j].delta_bias, true});
        if (passes) handles.push_back(done[j].handles[l - j - 1]);
      }
      if (passes) {
        done.push_back(dense_readout_pass(in[l], handles, std::min(c.sources, layers - 1 - l)));
        outs.push_back(done.back().own);
        outs.insert(outs.end(), done.back().readouts.begin(), done.back().readouts.end());
      } else {
        src.insert(src.begin(), {in[l].u, in[l].delta, in[l].A, in[l].B, in[l].delta_bias, true});
        const std::vector<Tensor> r = cross_layer_readout(src, in[l].C);
        outs.insert(outs.end(), r.begin(), r.end());
      }
    }
    if (grad) run_backward(outs, std::vector<Tensor>(outs.size(), dys[0]), false);
  };
  const double scans = static_cast<double>(layers + pairs);
  for (bool grad : {false, true}) {
    const double bytes = scans / M * (readout_fwd_bytes + (grad ? readout_bwd_bytes : 0));
    const double one_pass = median_seconds(c, [&] { dense_chain(false, grad); });
    const double passes = median_seconds(c, [&] { dense_chain(true, grad); });
    const char* pass = grad ? "fwd+bwd" : "forward";
    report(c, fmt::format("{} layers, read-outs, {}", layers, pass).c_str(), one_pass, bytes);
    report(c, fmt::format("{} layers, passes, {}", layers, pass).c_str(), passes, bytes);
    fmt::print("  passes / read-outs: {:.3f}\n", passes / one_pass);
  }

  const Tensor weight = randn({c.channels, 4}, 0.5), conv_bias = randn({c.channels}, 1);
  auto conv = [&](bool grad) {
    const Tensor x = grad ? u.detach().set_requires_grad() : u;
    const Tensor y = causal_conv1d(x, grad ? weight.detach().set_requires_grad() : weight,
                                   grad ? conv_bias.detach().set_requires_grad() : conv_bias, true);
    if (grad) y.backward(dy);
  };
  const double conv_fwd_bytes = tokens * 2 * D * elem, conv_bwd_bytes = tokens * 3 * D * elem;
  report(c, "causal_conv1d forward", median_seconds(c, [&] { conv(false); }), conv_fwd_bytes);
  report(c, "causal_conv1d fwd+bwd", median_seconds(c, [&] { conv(true); }),
         conv_fwd_bytes + conv_bwd_bytes);

  std::vector<Tensor> shallower_readouts;
  for (int64_t i = 0; i < c.sources; ++i) shallower_readouts.push_back(randn(seq, 1));
  const Tensor own = randn(seq, 1), gate = randn(seq, 1);
  auto leaf = [](const Tensor& t, bool grad) { return grad ? t.detach().set_requires_grad() : t; };
  auto dense_output = [&](bool fused, bool grad) {
    std::vector<Tensor> rs;
    for (const Tensor& r : shallower_readouts) rs.push_back(leaf(r, grad));
    const Tensor o = leaf(own, grad), g = leaf(gate, grad), x = leaf(u, grad), zz = leaf(z, grad);
    const Tensor d = leaf(Dskip, grad);
    Tensor y;
    if (fused) {
      y = dense_mamba_output(o, rs, g, x, d, zz);
    } else {
      Tensor sum_r = rs[0];
      for (size_t i = 1; i < rs.size(); ++i) sum_r = sum_r + rs[i];
      y = (o + sum_r * g + x * d.unsqueeze(-1)) * silu(zz);
    }
    if (grad) y.backward(dy);
  };
  if (c.sources > 0) {
    const double M = static_cast<double>(c.sources);
    const double out_fwd_bytes = tokens * (M + 5) * D * elem;
    const double out_bwd_bytes = tokens * (M + 10) * D * elem;
    for (bool grad : {false, true}) {
      const double bytes = out_fwd_bytes + (grad ? out_bwd_bytes : 0);
      const char* pass = grad ? "fwd+bwd" : "forward";
      const double fused = median_seconds(c, [&] { dense_output(true, grad); });
      const double plain = median_seconds(c, [&] { dense_output(false, grad); });
      report(c, fmt::format("dense output fused, {}", pass).c_str(), fused, bytes);
      report(c, fmt::format("dense output ops, {}", pass).c_str(), plain, bytes);
      fmt::print("  ops / fused: {:.3f}\n", plain / fused);
    }
  }
  return 0;
}
