// Cross-layer read-out of DenseMamba (see the header for the equation). Each r_j is the selective
// scan of source j's inputs read out by this layer's C: all of them run in one pass of the scan
// kernels (selective_scans_shared_C), whose backward recomputes the sources' states chunk by
// chunk and sums dC over the sources as it goes.
#include "ops/cross_layer_readout.hpp"

#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/registry.hpp"
#include "ops/selective_scan.hpp"

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

}  // namespace
}  // namespace dssm
