// Every shipped tiny model (configs/*-tiny.json) in f32 against the same model in f64 on the CPU:
// the logits and the gradient of the loss w.r.t. every parameter. The f64 model is the reference
// that gradcheck and the models' other tests stand on; this checks the f32 kernels the CPU
// trainer runs (matmul, norms, the AVX-512 forms of exp, silu, softplus, cross_entropy, ...)
// end to end.
#include <catch2/catch.hpp>

#include <random>

#include "tests/test_model_helpers.hpp"

using namespace dssm;
using namespace dssm::test;

// Tolerances from 100-200 seeds of each model (2026-12-02): the logits differ by at most 7.6e-5 of
// their largest value, the gradients by at most 1.15e-3 (densretnet-tiny's norm weights, whose
// gradients are small sums of cancelling terms; the other models stay below 1.5e-4). A wrong f32
// kernel shows 1e-2 and more.
TEST_CASE("every tiny model computes in f32 what it computes in f64", "[models]") {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  for (const char* name :
       {"densretnet-tiny", "retnet-tiny", "llama-tiny", "mamba-tiny", "densemamba-tiny"}) {
    INFO(name << ", seed " << seed);
    const nlohmann::json config = read_config(name);
    auto f32 = models::make_model(config, seed), f64 = models::make_model(config, seed);
    f64->to(DType::f64);
    f32->eval(), f64->eval();
    const Tensor tokens = random_ids(rng, 2, 65, config["vocab_size"].get<int64_t>());

    const Tensor prefix = tokens.narrow(1, 0, 64).contiguous();
    CHECK(relative_to_max(f32->forward(prefix).detach(), f64->forward(prefix).detach()) < 1e-3);

    next_token_loss(*f32, tokens).backward();
    next_token_loss(*f64, tokens).backward();
    const auto params32 = f32->named_parameters(), params64 = f64->named_parameters();
    REQUIRE(params32.size() == params64.size());
    for (size_t i = 0; i < params32.size(); ++i) {
      INFO("gradient of " << params32[i].name);
      REQUIRE(params32[i].tensor.dtype() == DType::f32);
      CHECK(relative_to_max(params32[i].tensor.grad(), params64[i].tensor.grad()) < 1e-2);
    }
  }
}
