// Helpers of the tests that compare a whole model with itself in another dtype or on another
// device (tests/test_models_f32.cpp, tests/cuda/test_models_cuda.cpp): the shipped configs, random
// token ids, the next-token loss, and the error relative to a tensor's largest value.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/language_model.hpp"
#include "ops/cross_entropy.hpp"

namespace dssm::test {

// configs/<name>.json, looked for upwards from the working directory and from this file.
inline nlohmann::json read_config(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path relative = fs::path("configs") / (name + ".json");
  for (fs::path dir : {fs::current_path(), fs::path(__FILE__).parent_path()}) {
    for (; !dir.empty(); dir = dir.parent_path()) {
      if (fs::exists(dir / relative)) {
        std::ifstream in(dir / relative);
        return nlohmann::json::parse(in);
      }
      if (dir == dir.parent_path()) break;
    }
  }
  FAIL("cannot find " << relative.string() << " above " << fs::current_path().string());
  return {};
}

// max |got - want| / max |want| (got on any device and in any floating dtype, want on the CPU);
// 0 when both are all zeros.
inline double relative_to_max(const Tensor& got, const Tensor& want) {
  const auto g = got.to(Device::cpu()).to_vector<double>(), w = want.to_vector<double>();
  REQUIRE(g.size() == w.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff = std::max(diff, std::abs(g[i] - w[i]));
    scale = std::max(scale, std::abs(w[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

inline Tensor random_ids(std::mt19937_64& rng, int64_t batch, int64_t length, int64_t vocab) {
  std::vector<int64_t> ids(static_cast<size_t>(batch * length));
  for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
  return Tensor::from_vector(ids, {batch, length});
}

// Mean next-token loss of ids [B, T] (targets: the ids shifted by one).
inline Tensor next_token_loss(models::LanguageModel& model, const Tensor& ids) {
  const int64_t B = ids.size(0), T = ids.size(1);
  const Tensor logits = model.forward(ids.narrow(1, 0, T - 1).contiguous());
  return cross_entropy(logits.reshape({B * (T - 1), -1}),
                       ids.narrow(1, 1, T - 1).contiguous().reshape({B * (T - 1)}));
}

}  // namespace dssm::test
