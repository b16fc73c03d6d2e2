#include "autograd/gradcheck.hpp"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.hpp"

namespace dssm {
namespace {

double weighted_sum(const Tensor& y, const std::vector<double>& w) {
  const std::vector<double> values = y.to_vector<double>();
  double total = 0;
  for (size_t i = 0; i < values.size(); ++i) total += values[i] * w[i];
  return total;
}

}  // namespace

GradcheckResult gradcheck(const GradcheckCase& c, Device device, uint64_t seed) {
  GradcheckResult result{.op = c.name, .device = device.str()};
  try {
    Generator gen(seed);
    const std::vector<Tensor> host_inputs = c.make_inputs(gen);
    auto differentiable = [&](size_t i) {
      return is_floating(host_inputs[i].dtype()) &&
             std::find(c.constant_inputs.begin(), c.constant_inputs.end(), i) ==
                 c.constant_inputs.end();
    };
    auto place = [&](const std::vector<Tensor>& hosts, bool track) {
      std::vector<Tensor> placed;
      for (size_t i = 0; i < hosts.size(); ++i) {
        Tensor t = hosts[i].to(device).detach();
        if (track && differentiable(i)) t.set_requires_grad(true);
        placed.push_back(t);
      }
      return placed;
    };

    // Analytic: one backward of L = sum(y * w).
    std::vector<Tensor> inputs = place(host_inputs, true);
    Tensor y = c.run(inputs);
    const Tensor w_tensor = Tensor::randn(y.shape(), gen, DType::f64);
    const std::vector<double> w = w_tensor.to_vector<double>();
    y.backward(w_tensor.to(y.dtype()).to(device));

    // Numeric: central differences, one element at a time.
    NoGradGuard no_grad;
    for (size_t i = 0; i < host_inputs.size(); ++i) {
      if (!differentiable(i)) continue;
      ++result.inputs;
      const Tensor analytic_grad = inputs[i].grad();
      const std::vector<double> analytic =
          analytic_grad.defined() ? analytic_grad.to_vector<double>()
                                  : std::vector<double>(host_inputs[i].numel(), 0.0);
      std::vector<double> values = host_inputs[i].to_vector<double>();
      for (size_t e = 0; e < values.size(); ++e) {
        std::vector<Tensor> perturbed = host_inputs;
        const double original = values[e];
        values[e] = original + c.eps;
        perturbed[i] = Tensor::from_vector(values, host_inputs[i].shape());
        const double plus = weighted_sum(c.run(place(perturbed, false)), w);
        values[e] = original - c.eps;
        perturbed[i] = Tensor::from_vector(values, host_inputs[i].shape());
        const double minus = weighted_sum(c.run(place(perturbed, false)), w);
        values[e] = original;
        const double numeric = (plus - minus) / (2 * c.eps);
        const double abs_err = std::abs(analytic[e] - numeric);
        const double rel_err = abs_err / std::max(std::abs(numeric), 1e-8);
        result.max_abs_err = std::max(result.max_abs_err, abs_err);
        result.max_rel_err = std::max(result.max_rel_err, std::min(rel_err, abs_err / 1e-8));
        if (!(abs_err <= c.atol + c.rtol * std::abs(numeric))) result.error = "gradient mismatch";
        ++result.elements;
      }
    }
    result.passed = result.error.empty() && result.inputs > 0;
    if (result.inputs == 0) result.error = "no differentiable input";
  } catch (const std::exception& e) {
    result.passed = false;
    result.error = e.what();
  }
  return result;
}

}  // namespace dssm
