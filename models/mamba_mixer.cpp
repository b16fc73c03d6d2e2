#include "models/mamba_mixer.hpp"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.hpp"
#include "nn/init.hpp"
#include "ops/dense_output.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/selective_scan.hpp"
#include "ops/shape.hpp"

namespace dssm::models {
namespace {

// dt_proj's bias: softplus^{-1}(dt) with dt log-uniform in [dt_min, dt_max], floored at
// dt_init_floor, so that softplus(bias) starts at dt (mamba_ssm's "dt_init").
void init_dt_bias(const Tensor& bias, const MambaConfig& c, Generator& gen) {
  const std::vector<double> u = Tensor::rand(bias.shape(), gen, DType::f64).to_vector<double>();
  std::vector<double> inverse(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    const double log_dt = std::log(c.dt_min) + u[i] * (std::log(c.dt_max) - std::log(c.dt_min));
    const double dt = std::max(std::exp(log_dt), c.dt_init_floor);
    inverse[i] = dt + std::log(-std::expm1(-dt));  // log(exp(dt) - 1), stable
  }
  bias.copy_from(Tensor::from_vector(inverse, bias.shape()));
}

// A_log[c, n] = log(n + 1): the S4D-real initialisation A[c, n] = -(n + 1).
void init_A_log(const Tensor& A_log) {
  const int64_t channels = A_log.size(0), N = A_log.size(1);
  std::vector<double> values(static_cast<size_t>(channels * N));
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t n = 0; n < N; ++n) values[c * N + n] = std::log(static_cast<double>(n + 1));
  }
  A_log.copy_from(Tensor::from_vector(values, A_log.shape()));
}

double fan_in_bound(int64_t fan_in) {
  return 1.0 / std::sqrt(static_cast<double>(fan_in));
}

// The conv state after the inputs x [batch, di, length]: the last d_conv - 1 inputs of the
// carried ones followed by x, oldest first (zeros before the start of the sequence).
Tensor conv_state_after(const Tensor& carried, const Tensor& x) {
  const int64_t keep = carried.size(2), length = x.size(2);
  const int64_t taken = std::min(keep, length);
  return concat({carried, x.narrow(2, length - taken, taken)}, 2)
      .narrow(2, taken, keep)
      .contiguous();
}

}  // namespace

MambaMixer::MambaMixer(const MambaConfig& config, int64_t layer, Generator& gen) : config_(config) {
  const int64_t d = config.d_model, di = config.d_inner(), N = config.d_state;
  const int64_t R = config.dt_rank;
  in_proj_ = register_module("in_proj", std::make_shared<nn::Linear>(d, 2 * di, false, gen));
  conv1d_ =
      register_module("conv1d", std::make_shared<nn::CausalConv1d>(di, config.d_conv, true, gen));
  x_proj_ = register_module("x_proj", std::make_shared<nn::Linear>(di, R + 2 * N, false, gen));
  dt_proj_ = register_module("dt_proj", std::make_shared<nn::Linear>(R, di, true, gen));
  A_log_ = register_parameter("A_log", Tensor::empty({di, N}), false);
  D_ = register_parameter("D", Tensor::ones({di}), false);
  out_proj_ = register_module("out_proj", std::make_shared<nn::Linear>(di, d, false, gen));
  if (config.dense) {
    dense_ = register_module("dense", std::make_shared<nn::DenseHiddenConnection>(
                                          layer, d, di, config.dense_options, gen));
  }
  if (config.dense && config.dense_variant == "paper") {
    for (int64_t k = 1; k <= config.dense_options.m && layer + k < config.n_layers; ++k) {
      if (nn::dense_inputs_of_layer(layer + k, config.dense_options) >= k) readers_ = k;
    }
  }

  // mamba_ssm's initialisation: PyTorch's default Linear init U(+-1/sqrt(fan_in)), out_proj
  // scaled down by sqrt(n_layers) (the GPT-2 residual rescaling), dt_proj.weight
  // U(+-1/sqrt(R)), dt_proj.bias the inverse softplus of dt, A S4D-real, D = 1.
  NoGradGuard no_grad;
  nn::init::uniform(in_proj_->weight(), fan_in_bound(d), gen);
  nn::init::uniform(x_proj_->weight(), fan_in_bound(di), gen);
  nn::init::uniform(dt_proj_->weight(), fan_in_bound(R), gen);
  init_dt_bias(dt_proj_->bias(), config, gen);
  init_A_log(A_log_);
  nn::init::uniform(out_proj_->weight(),
                    fan_in_bound(di) / std::sqrt(static_cast<double>(config.n_layers)), gen);
}

Tensor MambaMixer::A() const {
  return -exp(A_log_);
}

MambaMixer::Projected MambaMixer::project(const Tensor& x) const {
  const int64_t R = config_.dt_rank, N = config_.d_state;
  const std::vector<Tensor> parts = split(x_proj_->forward(x), {R, N, N}, -1);
  // dt_proj without its bias: the scan adds the bias before the softplus.
  const Tensor delta = matmul(parts[0], dt_proj_->weight().transpose(0, 1));
  return {delta, parts[1], parts[2]};
}

// project's products with the weights on the left, W x, so that they come out [batch, rows,
// length] without a transposing copy (and so do their gradients, see ops/matmul.cpp).
MambaMixer::Projected MambaMixer::project_channels(const Tensor& x) const {
  const int64_t R = config_.dt_rank, N = config_.d_state;
  const std::vector<Tensor> parts = split(x_proj_->forward_channels(x), {R, N, N}, 1);
  // dt_proj without its bias, as in project.
  const Tensor delta = matmul(dt_proj_->weight(), parts[0]);
  return {delta, parts[1].contiguous(), parts[2].contiguous()};
}

Tensor MambaMixer::forward(const Tensor& u_in, const std::vector<DenseSource>& previous,
                           DenseSource& source, MixerState* final_state) const {
  DSSM_CHECK(static_cast<int64_t>(previous.size()) == dense_inputs(), "MambaMixer",
             "expected the sources of {} shallower layers, got {}", dense_inputs(),
             previous.size());
  const int64_t di = config_.d_inner();
  const bool fuse = dense_inputs() > 0;
  const bool paper = config_.dense_variant == "paper";
  // The mixer runs channel-major: x, z, delta, B, C and y are [B, channels, T] rows, the
  // layout of the convolution and the scan. in_proj's halves and x_proj, dt_proj multiply from
  // the left (W u^T) and out_proj reads y^T as a transposed view, so neither the forward nor the
  // backward copies a [B, T, .] tensor into [B, ., T] or back.
  const Tensor u_t = u_in.transpose(1, 2);  // [B, d, T], a view
  const Tensor& W_in = in_proj_->weight();  // [2 di, d]: x's rows, then z's
  const Tensor x_in = matmul(W_in.narrow(0, 0, di), u_t);
  const Tensor z = matmul(W_in.narrow(0, di, di), u_t);
  Tensor x = conv1d_->forward(x_in, true);
  if (final_state) final_state->conv = conv_state_after(final_state->conv, x_in);
  source.x = x;
  constexpr auto kChannels = nn::DenseHiddenConnection::FeatureDim::channels;
  if (fuse && !paper) {  // variant "input": x^l + sum_i phi_i(x^{l-i})
    std::vector<Tensor> shallower;
    for (const DenseSource& s : previous) shallower.push_back(s.x);
    x = dense_->forward(x, u_t, shallower, kChannels);
  }

  // These [B, rows, T] tensors serve this layer's scan, its read-out by C and the deeper layers'
  // read-outs of this source alike, which keep them for their backward without copies.
  const Projected p = project_channels(x);
  const Tensor& C = p.C;
  source.scan = {.u = x,
                 .delta = p.delta,
                 .A = A(),
                 .B = p.B,
                 .delta_bias = dt_proj_->bias(),
                 .delta_softplus = true};
  const ScanSource& s = source.scan;
  // "paper": y = C (h + sum_i phi_i(h^{l-i})) + D x, the phi-fusion of the read-outs, then + D x,
  // channel-major like the rest (the gates computed from u^T). With one gate for all read-outs
  // (the paper's setting) in one fused op, else through the connection's general form.
  auto fused = [&](const Tensor& own, const std::vector<Tensor>& readouts) {
    if (dense_->sums_under_one_gate()) {
      return dense_mamba_output(own, readouts, dense_->shared_gate(u_t, kChannels), x, D_, z);
    }
    return (dense_->forward(own, u_t, readouts, kChannels) + x * D_.unsqueeze(-1)) * silu(z);
  };
  auto shallower = [&] {
    std::vector<ScanSource> scans;
    for (const DenseSource& prev : previous) scans.push_back(prev.scan);
    return scans;
  };
  ScanInputs in{.u = s.u,
                .delta = s.delta,
                .A = s.A,
                .B = s.B,
                .C = C,
                .D = D_,
                .z = z,
                .delta_bias = s.delta_bias,
                .delta_softplus = true};
  if (fuse && paper) in.D = Tensor(), in.z = Tensor();  // the read-out C h alone
  if (config_.dense && paper && !final_state) {
    // The own scan and the read-outs of the shallower layers' states in one pass, whose backward
    // leaves those layers' reverse walks to their own passes (prefill, which needs this layer's
    // last state, runs its own scan below).
    std::vector<StateHandle> handles;
    for (size_t i = 0; i < previous.size(); ++i) {
      DSSM_CHECK(previous[i].handles.size() > i, "MambaMixer",
                 "the source at distance {} brings {} handles, none for this layer (were the "
                 "shallower layers run with a final state, as in prefill?)",
                 i + 1, previous[i].handles.size());
      handles.push_back(previous[i].handles[i]);
    }
    DenseReadouts pass = dense_readout_pass(in, handles, readers_);
    source.handles = std::move(pass.handles);
    const Tensor y = fuse ? fused(pass.own, pass.readouts) : pass.own;
    return out_proj_->forward(y.transpose(1, 2));
  }
  const ScanResult scan = selective_scan(in, final_state != nullptr);
  if (final_state) final_state->ssm = scan.last_state;
  Tensor y = scan.y;
  if (fuse && paper) y = fused(y, cross_layer_readout(shallower(), C));
  return out_proj_->forward(y.transpose(1, 2));
}

Tensor MambaMixer::step(const Tensor& u_in, MixerState& state,
                        const std::vector<DenseStepSource>& previous,
                        DenseStepSource& source) const {
  DSSM_CHECK(static_cast<int64_t>(previous.size()) == dense_inputs(), "MambaMixer::step",
             "expected the sources of {} shallower layers, got {}", dense_inputs(),
             previous.size());
  const int64_t di = config_.d_inner();
  const bool fuse = dense_inputs() > 0;
  const bool paper = config_.dense_variant == "paper";
  const std::vector<Tensor> xz = split(in_proj_->forward(u_in), {di, di}, -1);  // [B, di]
  const Tensor& z = xz[1];
  Tensor x = conv1d_->step(xz[0], state.conv, true);
  source.x = x;
  if (fuse && !paper) {
    std::vector<Tensor> shallower;
    for (const DenseStepSource& s : previous) shallower.push_back(s.x);
    x = dense_->forward(x, u_in, shallower);
  }
  const Projected p = project(x);
  ScanInputs in{.u = x,
                .delta = p.delta,
                .A = A(),
                .B = p.B,
                .C = p.C,
                .D = D_,
                .z = z,
                .delta_bias = dt_proj_->bias(),
                .delta_softplus = true};
  Tensor y;
  if (fuse && paper) {
    in.D = Tensor();
    in.z = Tensor();
    const Tensor Ch = selective_scan_step(in, state.ssm);
    std::vector<Tensor> shallower;
    for (const DenseStepSource& s : previous) shallower.push_back(s.ssm);
    const std::vector<Tensor> readouts = cross_layer_readout_step(shallower, p.C);
    y = (dense_->forward(Ch, u_in, readouts) + x * D_) * silu(z);
  } else {
    y = selective_scan_step(in, state.ssm);
  }
  source.ssm = state.ssm;
  return out_proj_->forward(y);
}

MixerState MambaMixer::new_state(int64_t batch) const {
  const DType dtype = A_log_.dtype();
  const Device device = A_log_.device();
  const int64_t di = config_.d_inner();
  return {Tensor::zeros({batch, di, config_.d_conv - 1}, dtype, device),
          Tensor::zeros({batch, di, config_.d_state}, scan_state_dtype(dtype), device)};
}

}  // namespace dssm::models
