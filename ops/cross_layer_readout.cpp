// Cross-layer read-out of DenseMamba (see the header for the equations). Each r_j is the selective
// scan of source j's inputs read out by this layer's C. cross_layer_readout runs them all in one
// pass of the scan kernels (selective_scans_shared_C), whose backward recomputes the sources'
// states chunk by chunk and sums dC over the sources as it goes. dense_readout_pass adds the
// layer's own scan and, in its backward, computes only the read-outs' dC here (ReadoutGradJob),
// handing the rest of their gradient to the sources' own passes through the handles.
#include "ops/cross_layer_readout.hpp"

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/selective_scan_dispatch.hpp"

namespace dssm {

std::vector<Tensor> cross_layer_readout(const std::vector<ScanSource>& sources, const Tensor& C) {
  std::vector<ScanInputs> scans;
  for (size_t j = 0; j < sources.size(); ++j) {
    const ScanSource& s = sources[j];
    DSSM_CHECK(C.defined() && s.B.defined() && C.shape() == s.B.shape(), "cross_layer_readout",
               "expected C of the shape of source {}'s B {}, got {}", j,
               s.B.defined() ? describe(s.B) : "none", C.defined() ? describe(C) : "none");
    scans.push_back({.u = s.u,
                     .delta = s.delta,
                     .A = s.A,
                     .B = s.B,
                     .delta_bias = s.delta_bias,
                     .delta_softplus = s.delta_softplus});
  }
  return selective_scans_shared_C(scans, C);
}

namespace {

// The scan inputs of a source, read out by C.
ScanInputs read_out_by(const ScanSource& s, const Tensor& C) {
  return {.u = s.u,
          .delta = s.delta,
          .A = s.A,
          .B = s.B,
          .C = C,
          .delta_bias = s.delta_bias,
          .delta_softplus = s.delta_softplus};
}

}  // namespace

DenseReadouts dense_readout_pass(const ScanInputs& own, const std::vector<StateHandle>& sources,
                                 int64_t readers) {
  using namespace scan_dispatch;
  const char* op = "dense_readout_pass";
  DSSM_CHECK(readers >= 0, op, "expected a count of readers >= 0, got {}", readers);
  const ScanInputs own_in = checked_operands(own, false, op);
  const int64_t batch = own_in.u.size(0), channels = own_in.u.size(1), N = own_in.A.size(1);
  const int64_t length = own_in.u.size(2);
  const Shape per_channel{batch, channels, length}, per_state{batch, N, length};
  auto fits = [&](const Tensor& t, const Shape& shape) {
    return t.defined() && t.shape() == shape && t.dtype() == own_in.u.dtype() &&
           t.device() == own_in.u.device();
  };
  std::vector<ScanInputs> source_ins;
  for (size_t j = 0; j < sources.size(); ++j) {
    source_ins.push_back(checked_operands(read_out_by(sources[j].source, own_in.C), false, op));
    DSSM_CHECK(
        source_ins[j].u.shape() == own_in.u.shape() && source_ins[j].A.shape() == own_in.A.shape(),
        op, "expected source {} of the own scan's shapes (u {}, A {}), got u {}, A {}", j,
        describe(own_in.u), describe(own_in.A), describe(source_ins[j].u),
        describe(source_ins[j].A));
    const StateHandle& h = sources[j];
    DSSM_CHECK(fits(h.channels, per_channel) && fits(h.states, per_state), op,
               "expected source {}'s handle (from its dense_readout_pass) of {} {} and {} on {}, "
               "got {} and {}",
               j, dtype_name(own_in.u.dtype()), shape_str(per_channel), shape_str(per_state),
               own_in.u.device().str(), h.channels.defined() ? describe(h.channels) : "none",
               h.states.defined() ? describe(h.states) : "none");
  }
  std::vector<Tensor> differentiable{own.u, own.delta, own.A, own.B,
                                     own.C, own.D,     own.z, own.delta_bias};
  for (const StateHandle& h : sources) {
    differentiable.push_back(h.channels);
    differentiable.push_back(h.states);
  }
  const bool backward_follows = grad_enabled() && any_requires_grad(differentiable);

  // Forward: the own scan (keeping its chunk entry states for its backward) and the sources' scans
  // read out by C, in one launch when they have the same operands.
  DenseReadouts out;
  out.own = Tensor::empty(own_in.u.shape(), own_in.u.dtype(), own_in.u.device());
  const Tensor entry = chunk_entry_for(own_in, backward_follows);
  std::vector<ScanForwardJob> jobs{{own_in, out.own, Tensor(), entry}};
  if (own_in.D.defined() || own_in.z.defined()) {
    scan_forward(jobs);
    jobs.clear();
  }
  for (const ScanInputs& in : source_ins) {
    out.readouts.push_back(Tensor::empty(in.u.shape(), in.u.dtype(), in.u.device()));
    jobs.push_back({in, out.readouts.back(), Tensor(), Tensor()});
  }
  scan_forward(jobs);
  const Tensor zero = Tensor::zeros({1, 1, 1}, own_in.u.dtype(), own_in.u.device());
  std::vector<Tensor> outputs{out.own};
  outputs.insert(outputs.end(), out.readouts.begin(), out.readouts.end());
  for (int64_t k = 0; k < readers; ++k) {
    out.handles.push_back({{own.u, own.delta, own.A, own.B, own.delta_bias, own.delta_softplus},
                           zero.expand(per_channel),
                           zero.expand(per_state)});
    outputs.push_back(out.handles.back().channels);
    outputs.push_back(out.handles.back().states);
  }
  record(op, differentiable, outputs,
         [own_in, source_ins, entry, readers](const BackwardArgs& args) {
           const size_t m = source_ins.size();
           const DType dtype = own_in.u.dtype();
           const Tensor dC =
               Tensor::zeros(own_in.C.shape(), scan_state_dtype(dtype), own_in.C.device());
           // dC of the sources' read-outs: forward walks over their states.
           std::vector<Tensor> grad_r;
           std::vector<ReadoutGradJob> dC_jobs;
           for (size_t j = 0; j < m; ++j) {
             grad_r.push_back(args.grad(1 + j).contiguous());
             dC_jobs.push_back({source_ins[j], grad_r.back(), dC});
           }
           readout_dC(dC_jobs);
           // The own scan's backward, joined by its deeper readers' gradients (their handles'
           // factors).
           std::vector<ScanReader> deeper;
           for (size_t k = 0; k < static_cast<size_t>(readers); ++k) {
             deeper.push_back({.C = args.grad(1 + m + 2 * k + 1).contiguous(),
                               .grad = args.grad(1 + m + 2 * k).contiguous()});
           }
           const ScanGradients g = new_gradients(own_in, dC);
           scan_backward({{own_in, args.grad(0).contiguous(), Tensor(), g, entry, deeper}});
           std::vector<Tensor> grads = operand_gradients(g, dtype);
           // The sources' handles: their states' gradient in its factors (grad r_j, C).
           for (size_t j = 0; j < m; ++j) {
             grads.push_back(grad_r[j]);
             grads.push_back(own_in.C);
           }
           return grads;
         });
  return out;
}

std::vector<Tensor> cross_layer_readout_step(const std::vector<Tensor>& states, const Tensor& C_t) {
  const char* op = "cross_layer_readout_step";
  DSSM_CHECK(C_t.defined() && C_t.dim() == 2, op, "expected C_t of shape [batch, N], got {}",
             C_t.defined() ? describe(C_t) : "none");
  std::vector<Tensor> readouts;
  for (size_t j = 0; j < states.size(); ++j) {
    const Tensor& h = states[j];
    DSSM_CHECK(h.defined() && h.dim() == 3 && h.size(0) == C_t.size(0) &&
                   h.size(2) == C_t.size(1) && h.device() == C_t.device(),
               op, "expected state {} of shape [{}, channels, {}] on {}, got {}", j, C_t.size(0),
               C_t.size(1), C_t.device().str(), h.defined() ? describe(h) : "none");
    // [batch, channels, N] @ [batch, N, 1] in the state's dtype.
    const Tensor r = bmm(h, C_t.to(h.dtype()).unsqueeze(2)).squeeze(2);
    readouts.push_back(r.to(C_t.dtype()));
  }
  return readouts;
}

namespace {

// Gradcheck: two sources (one with bias + softplus), batch 2, channels 3, length 7, N 4.
const OpRegistration kCrossLayerReadout{
    {.name = "cross_layer_readout",
     .make_inputs =
         [](Generator& g) {
           std::vector<Tensor> in;
           for (int j = 0; j < 2; ++j) {
             in.push_back(random_normal(g, {2, 3, 7}));             // u
             in.push_back(random_uniform(g, {2, 3, 7}, 0.1, 0.8));  // delta
             in.push_back(random_uniform(g, {3, 4}, -1.5, -0.2));   // A
             in.push_back(random_normal(g, {2, 4, 7}));             // B
           }
           in.push_back(random_normal(g, {3}) * 0.3);  // source 1's delta_bias
           in.push_back(random_normal(g, {2, 4, 7}));  // C
           return in;
         },
     .run =
         [](const std::vector<Tensor>& in) {
           const std::vector<Tensor> r = cross_layer_readout(
               {{in[0], in[1], in[2], in[3]}, {in[4], in[5], in[6], in[7], in[8], true}}, in[9]);
           return r[0] + r[1] * 0.5;
         }}};

// Three layers' passes chained through their handles: layer 0 with D and a gate, read by layers
// 1 and 2; layer 1 with a delta bias and softplus, read by layer 2.
const OpRegistration kDenseReadoutPass{
    {.name = "dense_readout_pass",
     .make_inputs =
         [](Generator& g) {
           std::vector<Tensor> in;
           for (int l = 0; l < 3; ++l) {
             in.push_back(random_normal(g, {2, 3, 7}));             // u
             in.push_back(random_uniform(g, {2, 3, 7}, 0.1, 0.8));  // delta
             in.push_back(random_uniform(g, {3, 4}, -1.5, -0.2));   // A
             in.push_back(random_normal(g, {2, 4, 7}));             // B
             in.push_back(random_normal(g, {2, 4, 7}));             // C
           }
           in.push_back(random_normal(g, {3}));        // layer 0's D
           in.push_back(random_normal(g, {2, 3, 7}));  // layer 0's z
           in.push_back(random_normal(g, {3}) * 0.3);  // layer 1's delta_bias
           return in;
         },
     .run =
         [](const std::vector<Tensor>& in) {
           auto layer = [&](int l) {
             return ScanInputs{.u = in[5 * l],
                               .delta = in[5 * l + 1],
                               .A = in[5 * l + 2],
                               .B = in[5 * l + 3],
                               .C = in[5 * l + 4]};
           };
           ScanInputs own0 = layer(0), own1 = layer(1);
           own0.D = in[15], own0.z = in[16];
           own1.delta_bias = in[17], own1.delta_softplus = true;
           const DenseReadouts p0 = dense_readout_pass(own0, {}, 2);
           const DenseReadouts p1 = dense_readout_pass(own1, {p0.handles[0]}, 1);
           const DenseReadouts p2 = dense_readout_pass(layer(2), {p1.handles[0], p0.handles[1]}, 0);
           return p0.own + p1.own * 0.7 + p1.readouts[0] * 0.5 + p2.own * 0.3 +
                  p2.readouts[0] * 0.9 + p2.readouts[1] * 1.1;
         }}};

}  // namespace
}  // namespace dssm
