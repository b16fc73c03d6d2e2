// selective_scan, its one-token step and DenseMamba's cross-layer read-out, against plain loops
// written here from the equations (docs/ops-ssm.md) and against autograd through a composition
// of elementwise ops (which materialises every state).
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/grad_mode.hpp"
#include "ops/cross_layer_readout.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/selective_scan.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

struct Dims {
  int64_t batch, channels, length, N;
};

// Random f64 operands: A < 0 as in Mamba, delta > 0.
ScanInputs random_scan(Generator& g, Dims d, bool gated) {
  ScanInputs in{
      .u = Tensor::randn({d.batch, d.channels, d.length}, g, DType::f64),
      .delta = add_scalar(Tensor::rand({d.batch, d.channels, d.length}, g, DType::f64) * 0.7, 0.1),
      .A = add_scalar(Tensor::rand({d.channels, d.N}, g, DType::f64) * -1.3, -0.2),
      .B = Tensor::randn({d.batch, d.N, d.length}, g, DType::f64),
      .C = Tensor::randn({d.batch, d.N, d.length}, g, DType::f64),
      .D = Tensor::randn({d.channels}, g, DType::f64)};
  if (gated) {
    in.z = Tensor::randn({d.batch, d.channels, d.length}, g, DType::f64);
    in.delta_bias = Tensor::randn({d.channels}, g, DType::f64) * 0.3;
    in.delta_softplus = true;
  }
  return in;
}

struct NaiveScan {
  std::vector<double> y, last_state;  // [b, c, t] and [b, c, n]
  std::vector<double> states;         // [b, c, n, t]
};

// The recurrence exactly as written in the paper, one scalar at a time.
NaiveScan naive_scan(const ScanInputs& in) {
  const int64_t Bn = in.u.size(0), Dn = in.u.size(1), L = in.u.size(2), N = in.A.size(1);
  const auto u = in.u.to_vector<double>(), delta = in.delta.to_vector<double>();
  const auto A = in.A.to_vector<double>(), B = in.B.to_vector<double>();
  const auto C = in.C.to_vector<double>();
  const auto D = in.D.defined() ? in.D.to_vector<double>() : std::vector<double>(Dn, 0.0);
  const auto bias =
      in.delta_bias.defined() ? in.delta_bias.to_vector<double>() : std::vector<double>(Dn, 0.0);
  const auto z = in.z.defined() ? in.z.to_vector<double>() : std::vector<double>();
  NaiveScan out{std::vector<double>(Bn * Dn * L), std::vector<double>(Bn * Dn * N),
                std::vector<double>(Bn * Dn * N * L)};
  for (int64_t b = 0; b < Bn; ++b) {
    for (int64_t c = 0; c < Dn; ++c) {
      std::vector<double> h(N, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (b * Dn + c) * L + t;
        double dt = delta[i] + bias[c];
        if (in.delta_softplus) dt = std::log1p(std::exp(dt));
        double y = D[c] * u[i];
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * B[(b * N + n) * L + t] * u[i];
          y += C[(b * N + n) * L + t] * h[n];
          out.states[((b * Dn + c) * N + n) * L + t] = h[n];
        }
        if (!z.empty()) y *= z[i] / (1 + std::exp(-z[i]));
        out.y[i] = y;
      }
      for (int64_t n = 0; n < N; ++n) out.last_state[(b * Dn + c) * N + n] = h[n];
    }
  }
  return out;
}

// The same recurrence composed from differentiable elementwise ops, one time step at a time
// (every state materialised). Returns sum_t sum(out_t * weights[:, :, t]).
Tensor composed_loss(const ScanInputs& in, const Tensor& weights) {
  Tensor h = Tensor::zeros({in.u.size(0), in.u.size(1), in.A.size(1)}, DType::f64);
  Tensor dt_all = in.delta_bias.defined() ? in.delta + in.delta_bias.unsqueeze(1) : in.delta;
  if (in.delta_softplus) dt_all = softplus(dt_all);
  Tensor loss = Tensor::zeros({}, DType::f64);
  for (int64_t t = 0; t < in.u.size(2); ++t) {
    const Tensor dt = dt_all.select(2, t).unsqueeze(2), u = in.u.select(2, t);  // [b, c, 1], [b, c]
    h = exp(dt * in.A.unsqueeze(0)) * h + dt * in.B.select(2, t).unsqueeze(1) * u.unsqueeze(2);
    Tensor y = sum(h * in.C.select(2, t).unsqueeze(1), {2});
    if (in.D.defined()) y = y + in.D.unsqueeze(0) * u;
    if (in.z.defined()) y = y * silu(in.z.select(2, t));
    loss = loss + sum(y * weights.select(2, t));
  }
  return loss;
}

void require_close(const std::vector<double>& got, const std::vector<double>& want,
                   double tol = 1e-10) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

Tensor leaf(const Tensor& t) {
  return t.defined() ? t.detach().clone().set_requires_grad(true) : t;
}
ScanInputs leaves(const ScanInputs& in) {
  return {leaf(in.u), leaf(in.delta), leaf(in.A),          leaf(in.B),       leaf(in.C),
          leaf(in.D), leaf(in.z),     leaf(in.delta_bias), in.delta_softplus};
}
std::vector<Tensor> grads_of(const ScanInputs& in) {
  std::vector<Tensor> grads;
  for (const Tensor& t : {in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias}) {
    grads.push_back(t.defined() ? t.grad() : Tensor());
  }
  return grads;
}

}  // namespace

TEST_CASE("selective_scan equals the sequential loop in f64", "[ssm]") {
  Generator g(11);
  for (bool gated : {false, true}) {
    const ScanInputs in = random_scan(g, {2, 5, 37, 6}, gated);
    const ScanResult r = selective_scan(in, true);
    const NaiveScan want = naive_scan(in);
    require_close(r.y.to_vector<double>(), want.y);
    REQUIRE(r.last_state.shape() == Shape{2, 5, 6});
    require_close(r.last_state.to_vector<double>(), want.last_state);
  }
}

TEST_CASE("selective_scan gradients across chunk boundaries equal the composed ops'", "[ssm]") {
  // length 150 spans three of backward's recomputation chunks (64 steps each).
  Generator g(12);
  for (bool gated : {false, true}) {
    const ScanInputs base = random_scan(g, {2, 3, 150, 4}, gated);
    const Tensor weights = Tensor::randn({2, 3, 150}, g, DType::f64);
    const ScanInputs a = leaves(base), b = leaves(base);
    sum(selective_scan(a).y * weights).backward();
    composed_loss(b, weights).backward();
    const std::vector<Tensor> got = grads_of(a), want = grads_of(b);
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("input " << i);
      REQUIRE(got[i].defined() == want[i].defined());
      if (got[i].defined())
        require_close(got[i].to_vector<double>(), want[i].to_vector<double>(), 1e-9);
    }
  }
}

TEST_CASE("selective_scan_step token by token equals the full scan", "[ssm]") {
  Generator g(13);
  const ScanInputs in = random_scan(g, {2, 4, 9, 5}, true);
  const ScanResult full = selective_scan(in, true);
  NoGradGuard no_grad;
  const Tensor state = Tensor::zeros({2, 4, 5}, DType::f64);
  const std::vector<double> y = full.y.to_vector<double>();
  for (int64_t t = 0; t < 9; ++t) {
    auto at = [t](const Tensor& x) { return x.select(2, t); };  // non-contiguous views
    const Tensor y_t = selective_scan_step(
        {at(in.u), at(in.delta), in.A, at(in.B), at(in.C), in.D, at(in.z), in.delta_bias, true},
        state);
    require_close(y_t.to_vector<double>(), full.y.select(2, t).to_vector<double>());
  }
  require_close(state.to_vector<double>(), full.last_state.to_vector<double>());
}

TEST_CASE("selective_scan_step refuses to run where gradients are wanted", "[ssm]") {
  Generator g(14);
  const ScanInputs in = random_scan(g, {1, 2, 1, 3}, false);
  Tensor u = in.u.select(2, 0).clone().set_requires_grad(true);
  const Tensor state = Tensor::zeros({1, 2, 3}, DType::f64);
  REQUIRE_THROWS_WITH(
      selective_scan_step(
          {u, in.delta.select(2, 0), in.A, in.B.select(2, 0), in.C.select(2, 0), in.D}, state),
      Contains("selective_scan_step") && Contains("NoGradGuard"));
}

TEST_CASE("selective_scan handles lengths 0 and 1", "[ssm]") {
  Generator g(15);
  for (int64_t length : {0, 1}) {
    const ScanInputs base = random_scan(g, {2, 3, length, 4}, true);
    const ScanInputs in = leaves(base);
    const ScanResult r = selective_scan(in, true);
    REQUIRE(r.y.shape() == Shape{2, 3, length});
    require_close(r.y.to_vector<double>(), naive_scan(base).y);
    require_close(r.last_state.to_vector<double>(), naive_scan(base).last_state);
    (sum(r.y) + sum(r.last_state)).backward();
    REQUIRE(in.A.grad().shape() == Shape{3, 4});
    if (length == 0) REQUIRE(sum(abs(in.A.grad())).item() == 0.0);
  }
}

TEST_CASE("selective_scan reads non-contiguous inputs", "[ssm]") {
  Generator g(16);
  const ScanInputs in = random_scan(g, {2, 3, 8, 4}, true);
  // The same values stored [batch, length, channels] / [batch, length, N] and viewed transposed.
  auto strided = [](const Tensor& x) { return x.transpose(1, 2).contiguous().transpose(1, 2); };
  ScanInputs views = in;
  views.u = strided(in.u), views.delta = strided(in.delta), views.z = strided(in.z);
  views.B = strided(in.B), views.C = strided(in.C);
  REQUIRE_FALSE(views.u.is_contiguous());
  require_close(selective_scan(views).y.to_vector<double>(),
                selective_scan(in).y.to_vector<double>());
}

TEST_CASE("selective_scan rejects mismatched operands naming the op", "[ssm]") {
  Generator g(17);
  const ScanInputs in = random_scan(g, {2, 3, 8, 4}, true);
  ScanInputs bad = in;
  bad.delta = in.delta.narrow(2, 0, 7);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("selective_scan") &&
                                               Contains("delta of shape [2, 3, 8]") &&
                                               Contains("[2, 3, 7]"));
  bad = in, bad.B = in.B.narrow(1, 0, 3);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("B of shape [2, 4, 8]"));
  bad = in, bad.C = in.C.narrow(0, 0, 1);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("C of shape [2, 4, 8]"));
  bad = in, bad.A = in.A.narrow(0, 0, 2);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("A of shape [3, N]"));
  bad = in, bad.z = in.z.to(DType::f32);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("z to match u"));
  bad = in, bad.u = in.u.select(2, 0);
  REQUIRE_THROWS_WITH(selective_scan(bad), Contains("expected u of 3 dims"));
}

TEST_CASE("selective_scan in f32 and bf16 follows f64", "[ssm]") {
  Generator g(18);
  const ScanInputs in = random_scan(g, {2, 4, 100, 16}, true);
  for (auto [dtype, tol] : {std::pair{DType::f32, 1e-4}, std::pair{DType::bf16, 3e-2}}) {
    auto cast = [dtype](const Tensor& t) { return t.to(dtype); };
    const ScanInputs low{cast(in.u), cast(in.delta), cast(in.A),          cast(in.B), cast(in.C),
                         cast(in.D), cast(in.z),     cast(in.delta_bias), true};
    // bf16 rounds the inputs too: compare with f64 on the rounded inputs.
    auto back = [](const Tensor& t) { return t.to(DType::f64); };
    const ScanInputs rounded{back(low.u), back(low.delta),      back(low.A),
                             back(low.B), back(low.C),          back(low.D),
                             back(low.z), back(low.delta_bias), true};
    const std::vector<double> ref = selective_scan(rounded).y.to_vector<double>();
    const std::vector<double> got = selective_scan(low).y.to_vector<double>();
    double max_ref = 0;
    for (double v : ref) max_ref = std::max(max_ref, std::abs(v));
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - ref[i]) <= tol * max_ref);
  }
}

TEST_CASE("cross_layer_readout equals the materialised states contracted with C", "[ssm]") {
  Generator g(19);
  const int64_t Bn = 2, Dn = 3, L = 70, N = 4;
  std::vector<ScanInputs> layers;
  std::vector<ScanSource> sources;
  for (int j = 0; j < 3; ++j) {
    ScanInputs s = random_scan(g, {Bn, Dn, L, N}, false);
    s.C = Tensor(), s.D = Tensor();
    if (j == 2) s.delta_bias = Tensor::randn({Dn}, g, DType::f64) * 0.3, s.delta_softplus = true;
    layers.push_back(s);
    sources.push_back({s.u, s.delta, s.A, s.B, s.delta_bias, s.delta_softplus});
  }
  const Tensor C = Tensor::randn({Bn, N, L}, g, DType::f64);
  const std::vector<double> c = C.to_vector<double>();
  const std::vector<Tensor> r = cross_layer_readout(sources, C);
  REQUIRE(r.size() == 3);
  for (size_t j = 0; j < 3; ++j) {
    ScanInputs with_c = layers[j];
    with_c.C = C;
    const std::vector<double> h = naive_scan(with_c).states;  // [b, c, n, t]
    std::vector<double> want(Bn * Dn * L, 0.0);
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t ch = 0; ch < Dn; ++ch)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t t = 0; t < L; ++t)
            want[(b * Dn + ch) * L + t] +=
                c[(b * N + n) * L + t] * h[((b * Dn + ch) * N + n) * L + t];
    require_close(r[j].to_vector<double>(), want);
  }
}

TEST_CASE("cross_layer_readout gradients equal those of the materialised states", "[ssm]") {
  Generator g(20);
  const int64_t Bn = 2, Dn = 3, L = 80, N = 4;
  const ScanInputs s0 = random_scan(g, {Bn, Dn, L, N}, false),
                   s1 = random_scan(g, {Bn, Dn, L, N}, false);
  const Tensor C = Tensor::randn({Bn, N, L}, g, DType::f64);
  const Tensor w0 = Tensor::randn({Bn, Dn, L}, g, DType::f64),
               w1 = Tensor::randn({Bn, Dn, L}, g, DType::f64);
  auto source_leaves = [&](const ScanInputs& s, const Tensor& c) {
    return ScanInputs{leaf(s.u), leaf(s.delta), leaf(s.A), leaf(s.B), c};
  };
  const Tensor c_a = leaf(C), c_b = leaf(C);
  const ScanInputs a0 = source_leaves(s0, c_a), a1 = source_leaves(s1, c_a);
  const ScanInputs b0 = source_leaves(s0, c_b), b1 = source_leaves(s1, c_b);
  const std::vector<Tensor> r =
      cross_layer_readout({{a0.u, a0.delta, a0.A, a0.B}, {a1.u, a1.delta, a1.A, a1.B}}, c_a);
  (sum(r[0] * w0) + sum(r[1] * w1)).backward();
  (composed_loss(b0, w0) + composed_loss(b1, w1)).backward();
  require_close(c_a.grad().to_vector<double>(), c_b.grad().to_vector<double>(), 1e-9);
  for (auto [a, b] : {std::pair{a0, b0}, std::pair{a1, b1}}) {
    for (size_t i = 0; i < 4; ++i) {
      require_close(grads_of(a)[i].to_vector<double>(), grads_of(b)[i].to_vector<double>(), 1e-9);
    }
  }
}

TEST_CASE("cross_layer_readout_step over carried states equals the full read-out", "[ssm]") {
  Generator g(21);
  const ScanInputs s = random_scan(g, {2, 3, 6, 4}, true);
  const Tensor C = Tensor::randn({2, 4, 6}, g, DType::f64);
  const std::vector<Tensor> full =
      cross_layer_readout({{s.u, s.delta, s.A, s.B, s.delta_bias, true}}, C);
  NoGradGuard no_grad;
  const Tensor state = Tensor::zeros({2, 3, 4}, DType::f64);
  for (int64_t t = 0; t < 6; ++t) {
    auto at = [t](const Tensor& x) { return x.select(2, t); };
    // Advance source j's state with its own scan step (its C, D, z do not touch the state).
    selective_scan_step(
        {at(s.u), at(s.delta), s.A, at(s.B), at(s.C), s.D, at(s.z), s.delta_bias, true}, state);
    const std::vector<Tensor> r = cross_layer_readout_step({state}, at(C));
    require_close(r[0].to_vector<double>(), full[0].select(2, t).to_vector<double>());
  }
}

TEST_CASE("cross_layer_readout rejects a C that does not fit the source", "[ssm]") {
  Generator g(22);
  const ScanInputs s = random_scan(g, {2, 3, 6, 4}, false);
  REQUIRE_THROWS_WITH(cross_layer_readout({{s.u, s.delta, s.A, s.B}}, s.C.narrow(1, 0, 3)),
                      Contains("cross_layer_readout") && Contains("[2, 3, 6]"));
  REQUIRE_THROWS_WITH(
      cross_layer_readout_step({Tensor::zeros({2, 3, 5}, DType::f64)}, s.C.select(2, 0)),
      Contains("cross_layer_readout_step") && Contains("[2, channels, 4]"));
}

TEST_CASE("cross_layer_readout rejects sources of different widths", "[ssm]") {
  Generator g(23);
  const ScanInputs narrow = random_scan(g, {2, 3, 6, 4}, false),
                   wide = random_scan(g, {2, 5, 6, 4}, false);
  REQUIRE_THROWS_WITH(cross_layer_readout({{narrow.u, narrow.delta, narrow.A, narrow.B},
                                           {wide.u, wide.delta, wide.A, wide.B}},
                                          narrow.C),
                      Contains("selective_scans_shared_C") && Contains("[2, 3, 6]") &&
                          Contains("scan 1") && Contains("[2, 5, 6]"));
}

// Three layers as DenseMamba wires them: layer 0 (D and a gate) read by layers 1 and 2, layer 1
// read by layer 2. Returns sum(w . every output) of the passes (with_handles) or of the plain
// scans and cross_layer_readout.
Tensor dense_chain_loss(const std::vector<ScanInputs>& layers, const std::vector<Tensor>& w,
                        bool with_handles) {
  std::vector<ScanSource> src;
  for (const ScanInputs& s : layers) {
    src.push_back({s.u, s.delta, s.A, s.B, s.delta_bias, s.delta_softplus});
  }
  std::vector<Tensor> outs;  // own 0, own 1, r_10, own 2, r_21, r_20
  if (with_handles) {
    const DenseReadouts p0 = dense_readout_pass(layers[0], {}, 2);
    const DenseReadouts p1 = dense_readout_pass(layers[1], {p0.handles[0]}, 1);
    const DenseReadouts p2 = dense_readout_pass(layers[2], {p1.handles[0], p0.handles[1]}, 0);
    REQUIRE(p0.handles.size() == 2);
    REQUIRE(p2.handles.empty());
    outs = {p0.own, p1.own, p1.readouts[0], p2.own, p2.readouts[0], p2.readouts[1]};
  } else {
    outs.push_back(selective_scan(layers[0]).y);
    outs.push_back(selective_scan(layers[1]).y);
    outs.push_back(cross_layer_readout({src[0]}, layers[1].C)[0]);
    outs.push_back(selective_scan(layers[2]).y);
    const std::vector<Tensor> r2 = cross_layer_readout({src[1], src[0]}, layers[2].C);
    outs.push_back(r2[0]);
    outs.push_back(r2[1]);
  }
  Tensor loss = Tensor::zeros({}, DType::f64);
  for (size_t i = 0; i < outs.size(); ++i) loss = loss + sum(outs[i] * w[i]);
  return loss;
}

TEST_CASE("dense_readout_pass gives the values and gradients of the scans it replaces", "[ssm]") {
  Generator g(24);
  const Dims d{2, 3, 150, 4};  // 150 steps: three of the CPU kernel's chunks of 64
  std::vector<ScanInputs> layers;
  for (int l = 0; l < 3; ++l) {
    ScanInputs s = random_scan(g, d, l == 1);
    if (l > 0) s.D = Tensor(), s.z = Tensor();
    if (l == 0) s.z = Tensor::randn({d.batch, d.channels, d.length}, g, DType::f64);
    layers.push_back(s);
  }
  std::vector<Tensor> w;
  for (int i = 0; i < 6; ++i)
    w.push_back(Tensor::randn({d.batch, d.channels, d.length}, g, DType::f64));
  std::vector<ScanInputs> a, b;
  for (const ScanInputs& s : layers) a.push_back(leaves(s)), b.push_back(leaves(s));
  const Tensor loss_a = dense_chain_loss(a, w, true), loss_b = dense_chain_loss(b, w, false);
  require_close(loss_a.to_vector<double>(), loss_b.to_vector<double>(), 1e-12);
  loss_a.backward();
  loss_b.backward();
  for (size_t l = 0; l < 3; ++l) {
    const std::vector<Tensor> ga = grads_of(a[l]), gb = grads_of(b[l]);
    for (size_t i = 0; i < ga.size(); ++i) {
      INFO("layer " << l << " operand " << i);
      REQUIRE(ga[i].defined() == gb[i].defined());
      if (ga[i].defined()) require_close(ga[i].to_vector<double>(), gb[i].to_vector<double>());
    }
  }
}

TEST_CASE("dense_readout_pass rejects missing or foreign handles", "[ssm]") {
  Generator g(25);
  const ScanInputs s0 = random_scan(g, {2, 3, 6, 4}, false),
                   s1 = random_scan(g, {2, 3, 6, 4}, false);
  const ScanSource src0{s0.u, s0.delta, s0.A, s0.B};
  REQUIRE_THROWS_WITH(dense_readout_pass(s1, {{src0, Tensor(), Tensor()}}, 0),
                      Contains("dense_readout_pass") && Contains("got none and none"));
  const Tensor per_channel = Tensor::zeros({2, 3, 6}, DType::f64);
  REQUIRE_THROWS_WITH(
      dense_readout_pass(s1, {{src0, per_channel, per_channel}}, 0),
      Contains("dense_readout_pass") && Contains("[2, 4, 6]") && Contains("got f64[2, 3, 6]"));
}
