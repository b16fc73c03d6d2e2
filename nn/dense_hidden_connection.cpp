#include "nn/dense_hidden_connection.hpp"

#include <algorithm>
#include <cmath>

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape.hpp"
#include "tensor/error.hpp"

namespace dssm::nn {

int64_t dense_inputs_of_layer(int64_t layer, const DenseConnectionOptions& options) {
  DSSM_CHECK(options.m >= 0 && options.every >= 1, "DenseHiddenConnection",
             "expected m >= 0 and every >= 1, got m {} every {}", options.m, options.every);
  if (options.projection == DenseProjection::none || layer % options.every != 0) return 0;
  return std::min(options.m, layer);
}

std::string to_string(DenseProjection projection) {
  switch (projection) {
    case DenseProjection::none:
      return "none";
    case DenseProjection::identity:
      return "identity";
    case DenseProjection::linear:
      return "linear";
  }
  return "?";
}

std::string to_string(DenseSelect select) {
  switch (select) {
    case DenseSelect::none:
      return "none";
    case DenseSelect::mlp:
      return "mlp";
    case DenseSelect::linear:
      return "linear";
  }
  return "?";
}

std::string to_string(DenseFusion fusion) {
  switch (fusion) {
    case DenseFusion::add:
      return "add";
    case DenseFusion::concat:
      return "concat";
  }
  return "?";
}

DenseHiddenConnection::DenseHiddenConnection(int64_t layer, int64_t input_dim, int64_t width,
                                             const DenseConnectionOptions& options, Generator& gen)
    : options_(options),
      input_dim_(input_dim),
      width_(width),
      num_previous_(dense_inputs_of_layer(layer, options)) {
  DSSM_CHECK(layer >= 0 && input_dim > 0 && width > 0, "DenseHiddenConnection",
             "expected layer >= 0 and positive widths, got layer {} input_dim {} width {}", layer,
             input_dim, width);
  if (!active()) return;
  const int64_t pairs = options.shared ? 1 : num_previous_;
  const int64_t gate_hidden =
      options.gate_hidden > 0 ? options.gate_hidden : std::max<int64_t>(1, input_dim / 32);
  const double gate_gain = std::pow(2.0, -2.5);
  if (options.projection == DenseProjection::linear) {
    projections_ = register_module("projections", std::make_shared<ModuleList<Linear>>());
    for (int64_t i = 0; i < pairs; ++i) {
      projections_->push_back(std::make_shared<Linear>(width, width, false, gen));
    }
  }
  if (options.select == DenseSelect::mlp) {
    mlp_gates_ = register_module("gates", std::make_shared<ModuleList<GateMLP>>());
    for (int64_t i = 0; i < pairs; ++i) {
      GateMLP& gate =
          mlp_gates_->push_back(std::make_shared<GateMLP>(input_dim, gate_hidden, width, gen));
      init::xavier_uniform(gate.fc1().weight(), gate_gain, gen);
      init::xavier_uniform(gate.fc2().weight(), gate_gain, gen);
    }
  } else if (options.select == DenseSelect::linear) {
    linear_gates_ = register_module("gates", std::make_shared<ModuleList<Linear>>());
    for (int64_t i = 0; i < pairs; ++i) {
      Linear& gate =
          linear_gates_->push_back(std::make_shared<Linear>(input_dim, width, false, gen));
      init::xavier_uniform(gate.weight(), gate_gain, gen);
    }
  }
  if (options.fusion == DenseFusion::concat) {
    fuse_ = register_module(
        "fuse", std::make_shared<Linear>((num_previous_ + 1) * width, width, false, gen));
  }
  if (options.norm)
    norm_ = register_module("norm", std::make_shared<RMSNorm>(width, options.norm_eps));
}

namespace {

// A Linear or GateMLP applied to the features, wherever they are.
template <typename Layer>
Tensor apply(const Layer& layer, const Tensor& x, DenseHiddenConnection::FeatureDim features) {
  return features == DenseHiddenConnection::FeatureDim::last ? layer.forward(x)
                                                             : layer.forward_channels(x);
}

}  // namespace

Tensor DenseHiddenConnection::gate(size_t i, const Tensor& x, FeatureDim features) const {
  if (mlp_gates_) return silu(apply((*mlp_gates_)[i], x, features));
  if (linear_gates_) return silu(apply((*linear_gates_)[i], x, features));
  return Tensor();
}

bool DenseHiddenConnection::sums_under_one_gate() const {
  return active() && options_.shared && !projections_ && !fuse_ && !norm_;
}

Tensor DenseHiddenConnection::shared_gate(const Tensor& x, FeatureDim features) const {
  DSSM_CHECK(sums_under_one_gate(), "DenseHiddenConnection",
             "shared_gate needs one shared gate, the Identity projection, fusion by addition and "
             "no norm (options: shared {}, projection {}, fusion {}, norm {})",
             options_.shared, to_string(options_.projection), to_string(options_.fusion),
             options_.norm);
  return gate(0, x, features);
}

// h' = Fuse(h, phi_1(h^{l-1}), ..., phi_m(h^{l-m}))   (Eq. 13)
Tensor DenseHiddenConnection::forward(const Tensor& hidden, const Tensor& x,
                                      const std::vector<Tensor>& previous,
                                      FeatureDim features) const {
  DSSM_CHECK(static_cast<int64_t>(previous.size()) == num_previous_, "DenseHiddenConnection",
             "expected {} previous hidden states, got {}", num_previous_, previous.size());
  if (!active()) return hidden;
  const bool last = features == FeatureDim::last;
  const int64_t dim = last ? -1 : 1;
  auto layout = [last](int64_t n) {
    return last ? fmt::format("[..., {}]", n) : fmt::format("[batch, {}, length]", n);
  };
  DSSM_CHECK((last ? hidden.dim() >= 1 : hidden.dim() == 3) && hidden.size(dim) == width_,
             "DenseHiddenConnection", "expected hidden {}, got {}", layout(width_),
             describe(hidden));
  DSSM_CHECK(x.dim() == hidden.dim() && x.size(dim) == input_dim_, "DenseHiddenConnection",
             "expected x {} with the other dims of hidden {}, got {}", layout(input_dim_),
             describe(hidden), describe(x));
  DSSM_CHECK(last || !norm_, "DenseHiddenConnection",
             "the norm after fusion needs the features along the last dim");
  for (size_t i = 0; i < previous.size(); ++i) {
    DSSM_CHECK(previous[i].shape() == hidden.shape(), "DenseHiddenConnection",
               "previous[{}] (layer l-{}) must be shaped like hidden {}, got {}", i, i + 1,
               describe(hidden), describe(previous[i]));
  }
  // phi_i(h^{l-i}) = Proj_i(h^{l-i}) ⊙ silu(Select_i(x))   (Eq. 11-12); a shared gate is
  // computed once.
  const Tensor shared_gate = options_.shared ? gate(0, x, features) : Tensor();
  std::vector<Tensor> terms;
  if (options_.shared && !projections_ && !fuse_) {
    // One gate and no projection: sum_i h^{l-i} ⊙ g = (sum_i h^{l-i}) ⊙ g, one product.
    Tensor sum = previous.front();
    for (size_t i = 1; i < previous.size(); ++i) sum = sum + previous[i];
    terms.push_back(shared_gate.defined() ? sum * shared_gate : sum);
  } else {
    for (size_t i = 0; i < previous.size(); ++i) {
      const size_t pair = options_.shared ? 0 : i;
      const Tensor projected =
          projections_ ? apply((*projections_)[pair], previous[i], features) : previous[i];
      const Tensor g = options_.shared ? shared_gate : gate(i, x, features);
      terms.push_back(g.defined() ? projected * g : projected);
    }
  }
  Tensor fused;
  if (fuse_) {
    terms.insert(terms.begin(), hidden);
    fused = apply(*fuse_, concat(terms, dim), features);
  } else {
    fused = hidden;
    for (const Tensor& term : terms) fused = fused + term;
  }
  return norm_ ? norm_->forward(fused) : fused;
}

}  // namespace dssm::nn
