#include "models/mamba_config.hpp"

#include <limits>

namespace dssm::models {
namespace {

constexpr int64_t kBig = std::numeric_limits<int32_t>::max();

template <typename E>
E enum_of(const std::string& name, std::initializer_list<E> values) {
  for (E v : values) {
    if (nn::to_string(v) == name) return v;
  }
  return *values.begin();  // unreachable: ConfigReader::choice admits only listed names
}

}  // namespace

MambaConfig MambaConfig::from_json(const nlohmann::json& json) {
  ConfigReader r(json, "mamba config");
  MambaConfig c;
  c.arch = r.choice("arch", "mamba", {"mamba", "densemamba"});
  c.dense = c.arch == "densemamba";
  c.vocab_size = r.integer("vocab_size", 1, kBig);
  c.d_model = r.integer("d_model", 1, kBig);
  c.n_layers = r.integer("n_layers", 1, 4096);
  c.d_state = r.integer("d_state", c.d_state, 1, 4096);
  c.expand = r.integer("expand", c.expand, 1, 64);
  c.d_conv = r.integer("d_conv", c.d_conv, 2, 64);
  c.dt_rank = r.integer("dt_rank", 0, 0, kBig);
  if (c.dt_rank == 0) c.dt_rank = (c.d_model + 15) / 16;
  c.dt_min = r.real("dt_min", c.dt_min, 1e-8, 10.0);
  c.dt_max = r.real("dt_max", c.dt_max, 1e-8, 10.0);
  c.dt_init_floor = r.real("dt_init_floor", c.dt_init_floor, 0.0, 10.0);
  c.norm_eps = r.real("norm_eps", c.norm_eps, 0.0, 1.0);
  if (c.dt_min > c.dt_max) {
    r.problem(fmt::format("'dt_min' ({}) must not exceed 'dt_max' ({})", c.dt_min, c.dt_max));
  }
  if (c.dense) {
    nn::DenseConnectionOptions& o = c.dense_options;
    c.dense_variant = r.choice("dense_variant", c.dense_variant, {"paper", "input"});
    o.m = r.integer("dense_m", 4, 0, 4096);
    o.projection = enum_of(r.choice("dense_projection", "identity", {"identity", "linear"}),
                           {nn::DenseProjection::identity, nn::DenseProjection::linear});
    o.select = enum_of(r.choice("dense_select", "mlp", {"mlp", "linear", "none"}),
                       {nn::DenseSelect::mlp, nn::DenseSelect::linear, nn::DenseSelect::none});
    o.fusion = enum_of(r.choice("dense_fusion", "add", {"add", "concat"}),
                       {nn::DenseFusion::add, nn::DenseFusion::concat});
    o.shared = r.boolean("dense_shared", true);
    o.every = r.integer("dense_every", 1, 1, 4096);
    o.gate_hidden = r.integer("dense_gate_hidden", 0, 0, kBig);
    // No norm after fusion: it would not commute with the read-out by C (see mamba_mixer.hpp).
    o.norm = false;
  }
  r.finish();
  return c;
}

nlohmann::json MambaConfig::to_json() const {
  nlohmann::json j = {{"arch", arch},
                      {"vocab_size", vocab_size},
                      {"d_model", d_model},
                      {"n_layers", n_layers},
                      {"d_state", d_state},
                      {"expand", expand},
                      {"d_conv", d_conv},
                      {"dt_rank", dt_rank},
                      {"dt_min", dt_min},
                      {"dt_max", dt_max},
                      {"dt_init_floor", dt_init_floor},
                      {"norm_eps", norm_eps}};
  if (dense) {
    const nn::DenseConnectionOptions& o = dense_options;
    j["dense_variant"] = dense_variant;
    j["dense_m"] = o.m;
    j["dense_projection"] = nn::to_string(o.projection);
    j["dense_select"] = nn::to_string(o.select);
    j["dense_fusion"] = nn::to_string(o.fusion);
    j["dense_shared"] = o.shared;
    j["dense_every"] = o.every;
    j["dense_gate_hidden"] = o.gate_hidden;
  }
  return j;
}

}  // namespace dssm::models
