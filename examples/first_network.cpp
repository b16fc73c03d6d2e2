// A first look at densessm: build a two-layer network from ops, train it with plain gradient
// descent to fit y = sin(3x) on [-1, 1], then gradcheck one op.
//
//   build/first_network
//
// Everything here is the public API: Tensor (tensor/), autograd (backward, NoGradGuard),
// ops (matmul, tanh, arithmetic, mean) and gradcheck.
#include <fmt/format.h>

#include <cmath>

#include "autograd/grad_mode.hpp"
#include "autograd/gradcheck.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"

using namespace dssm;

int main() {
  Generator gen(0);

  // The data: 256 points of y = sin(3x).
  const Tensor x = Tensor::arange(-1.0, 1.0, 2.0 / 256).reshape({256, 1});
  std::vector<float> targets;
  for (float v : x.to_vector<float>()) targets.push_back(std::sin(3 * v));
  const Tensor y = Tensor::from_vector(targets, {256, 1});

  // The model: 1 -> 32 -> 1 with tanh. Leaves that require grad are the parameters.
  Tensor w1 = (Tensor::randn({1, 32}, gen) * 1.0).set_requires_grad();
  Tensor b1 = Tensor::zeros({32}).set_requires_grad();
  Tensor w2 = (Tensor::randn({32, 1}, gen) * (1.0 / std::sqrt(32.0))).set_requires_grad();
  Tensor b2 = Tensor::zeros({1}).set_requires_grad();
  std::vector<Tensor*> params = {&w1, &b1, &w2, &b2};

  const float learning_rate = 0.1f;
  for (int step = 0; step <= 600; ++step) {
    // Forward: ops record a graph because the parameters require grad.
    const Tensor hidden = tanh(matmul(x, w1) + b1);
    const Tensor prediction = matmul(hidden, w2) + b2;
    const Tensor loss = mean(pow(prediction - y, 2.0));

    // Backward fills .grad of every parameter; the update itself must not be recorded.
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor* p : params) {
      *p = (*p - p->grad() * learning_rate).set_requires_grad();
    }
    if (step % 100 == 0) fmt::print("step {:4d}  loss {:.5f}\n", step, loss.item());
  }

  // gradcheck compares backward with float64 finite differences.
  const GradcheckCase tanh_case{
      .name = "tanh",
      .make_inputs = [](Generator& g) {
        return std::vector<Tensor>{Tensor::randn({4, 3}, g, DType::f64)};
      },
      .run = [](const std::vector<Tensor>& in) { return tanh(in[0]); }};
  const GradcheckResult r = gradcheck(tanh_case, Device::cpu());
  fmt::print("gradcheck tanh: max abs err {:.2e} -> {}\n", r.max_abs_err,
             r.passed ? "pass" : "FAIL");
  return r.passed ? 0 : 1;
}
