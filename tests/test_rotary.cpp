// Rotary position encoding with LLaMA's frequencies (ops/rotary.hpp): against plain loops, against
// transformers' "rotate_half" layout on permuted channels, its backward, and its errors. RetNet's
// default schedule is tested in tests/test_retention.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "ops/rotary.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// LLaMA's inv_freq as transformers writes it: 1 / base^(arange(0, dim, 2) / dim).
double llama_inv_freq(int64_t pair, int64_t dim, double base) {
  return 1.0 / std::pow(base, static_cast<double>(2 * pair) / static_cast<double>(dim));
}

}  // namespace

TEST_CASE("rotary with LLaMA's frequencies equals a plain loop over adjacent pairs", "[rotary]") {
  Generator gen(std::random_device{}());
  for (double base : {10000.0, 500000.0, 37.5}) {
    const int64_t rows = 3, length = 7, dim = 12, offset = 11;
    INFO("base " << base);
    const Tensor x = Tensor::randn({rows, length, dim}, gen, DType::f64);
    const std::vector<double> in = x.to_vector<double>();
    std::vector<double> expected(in.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t l = 0; l < length; ++l) {
        for (int64_t i = 0; i < dim / 2; ++i) {
          const double angle = static_cast<double>(offset + l) * llama_inv_freq(i, dim, base);
          const size_t at = static_cast<size_t>((r * length + l) * dim + 2 * i);
          expected[at] = in[at] * std::cos(angle) - in[at + 1] * std::sin(angle);
          expected[at + 1] = in[at + 1] * std::cos(angle) + in[at] * std::sin(angle);
        }
      }
    }
    const RotaryFrequencies llama{.spacing = RotarySpacing::llama, .base = base};
    CHECK(max_abs_diff(rotary(x, offset, llama).to_vector<double>(), expected) < 1e-12);
    for (int64_t i = 0; i < dim / 2; ++i) {
      CHECK(rotary_angle(i, dim, llama) == Approx(llama_inv_freq(i, dim, base)).epsilon(1e-14));
    }
  }
}

TEST_CASE("rotary defaults to RetNet's schedule; LLaMA's differs from it", "[rotary]") {
  const int64_t dim = 8;
  for (int64_t i = 0; i < dim / 2; ++i) {
    // RetNet: 1 / 10000^linspace(0, 1, dim/2); LLaMA: 1 / 10000^(2i/dim).
    CHECK(rotary_angle(i, dim) == Approx(std::pow(10000.0, -i / 3.0)).epsilon(1e-14));
    CHECK(rotary_angle(i, dim, {.spacing = RotarySpacing::llama}) ==
          Approx(std::pow(10000.0, -i / 4.0)).epsilon(1e-14));
  }
  Generator gen(std::random_device{}());
  const Tensor x = Tensor::randn({2, 5, dim}, gen, DType::f64);
  CHECK(
      max_abs_diff(
          rotary(x, 3).to_vector<double>(),
          rotary(x, 3, {.spacing = RotarySpacing::retnet, .base = 10000.0}).to_vector<double>()) ==
      0.0);
  CHECK(max_abs_diff(rotary(x, 3).to_vector<double>(),
                     rotary(x, 3, {.spacing = RotarySpacing::llama}).to_vector<double>()) > 1e-3);
}

// transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb on one head: channel j pairs with
// j + dim/2, q * cos + rotate_half(q) * sin, cos/sin of position * inv_freq[j mod dim/2].
// Our op on the channels reordered (ours 2i = theirs i, ours 2i+1 = theirs i + dim/2) must give
// the same values, reordered alike (the permutation models/hf_import.cpp applies to q_proj/k_proj).
TEST_CASE("LLaMA rotary on paired channels equals transformers' rotate_half on halves",
          "[rotary]") {
  Generator gen(std::random_device{}());
  const int64_t heads = 2, length = 9, dim = 16, half = dim / 2, offset = 4;
  const double base = 10000.0;
  const Tensor theirs = Tensor::randn({heads, length, dim}, gen, DType::f64);
  const std::vector<double> t = theirs.to_vector<double>();
  std::vector<double> rotated_theirs(t.size()), ours(t.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t l = 0; l < length; ++l) {
      const size_t row = static_cast<size_t>((h * length + l) * dim);
      for (int64_t j = 0; j < dim; ++j) {
        const double angle = static_cast<double>(offset + l) * llama_inv_freq(j % half, dim, base);
        const double rotate_half = j < half ? -t[row + j + half] : t[row + j - half];
        rotated_theirs[row + j] = t[row + j] * std::cos(angle) + rotate_half * std::sin(angle);
      }
      for (int64_t i = 0; i < half; ++i) {
        ours[row + 2 * i] = t[row + i];
        ours[row + 2 * i + 1] = t[row + half + i];
      }
    }
  }
  const std::vector<double> got = rotary(Tensor::from_vector(ours, {heads, length, dim}), offset,
                                         {.spacing = RotarySpacing::llama, .base = base})
                                      .to_vector<double>();
  double worst = 0;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t l = 0; l < length; ++l) {
      const size_t row = static_cast<size_t>((h * length + l) * dim);
      for (int64_t i = 0; i < half; ++i) {
        worst = std::max(worst, std::abs(got[row + 2 * i] - rotated_theirs[row + i]));
        worst = std::max(worst, std::abs(got[row + 2 * i + 1] - rotated_theirs[row + half + i]));
      }
    }
  }
  CHECK(worst < 1e-12);
}

TEST_CASE("LLaMA rotary: backward rotates back, one token at offset p is row p", "[rotary]") {
  Generator gen(std::random_device{}());
  const RotaryFrequencies llama{.spacing = RotarySpacing::llama, .base = 500.0};
  const Tensor x = Tensor::randn({2, 3, 10, 6}, gen, DType::f64).set_requires_grad();
  const Tensor g = Tensor::randn(x.shape(), gen, DType::f64);
  const Tensor y = rotary(x, 2, llama);
  y.backward(g);
  // A rotation is orthogonal: the gradient is g rotated back, so rotating it forward gives g.
  CHECK(max_abs_diff(rotary(x.grad(), 2, llama).to_vector<double>(), g.to_vector<double>()) <
        1e-12);
  for (int64_t p : {0, 4, 9}) {
    INFO("position " << p);
    CHECK(max_abs_diff(rotary(x.detach().narrow(2, p, 1), 2 + p, llama).to_vector<double>(),
                       y.detach().narrow(2, p, 1).to_vector<double>()) < 1e-12);
  }
}

TEST_CASE("rotary rejects a frequency base that is not above 1", "[rotary]") {
  const Tensor x = Tensor::zeros({1, 2, 4}, DType::f64);
  for (double base : {1.0, 0.5, -3.0, std::nan("")}) {
    CHECK_THROWS_WITH(rotary(x, 0, {.spacing = RotarySpacing::llama, .base = base}),
                      Contains("rotary") && Contains("expected a frequency base > 1"));
  }
}
