// The configuration of Mamba and DenseMamba (configs/mamba-*.json, configs/densemamba-*.json).
//
//   {"arch": "mamba" | "densemamba", "vocab_size", "d_model", "n_layers",
//    "d_state": 16, "expand": 2, "d_conv": 4, "dt_rank": 0 (= ceil(d_model / 16)),
//    "dt_min": 1e-3, "dt_max": 0.1, "dt_init_floor": 1e-4, "norm_eps": 1e-5,
//    DenseMamba only:
//    "dense_variant": "paper" | "input", "dense_m": 4, "dense_projection": "identity",
//    "dense_select": "mlp", "dense_fusion": "add", "dense_shared": true, "dense_every": 1,
//    "dense_gate_hidden": 0 (= d_model / 32)}
#pragma once

#include <string>

#include "models/config.hpp"
#include "nn/dense_hidden_connection.hpp"

namespace dssm::models {

struct MambaConfig : ModelConfig {
  int64_t d_state = 16;  // N
  int64_t expand = 2;    // di = expand * d_model
  int64_t d_conv = 4;    // width of the causal convolution
  int64_t dt_rank = 0;   // R; 0 in a config file means ceil(d_model / 16)
  double dt_min = 1e-3;  // dt at init is log-uniform in [dt_min, dt_max], floored
  double dt_max = 0.1;
  double dt_init_floor = 1e-4;
  double norm_eps = 1e-5;

  bool dense = false;                   // arch "densemamba"
  std::string dense_variant = "paper";  // "paper": fuse SSM states; "input": fuse SSM inputs
  nn::DenseConnectionOptions dense_options;

  int64_t d_inner() const { return expand * d_model; }

  // Reads and checks every field (all problems in one dssm::Error).
  static MambaConfig from_json(const nlohmann::json& json);
  nlohmann::json to_json() const override;
};

}  // namespace dssm::models
