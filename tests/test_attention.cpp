// causal_attention (ops/attention.hpp) on the CPU in float64: against a plain loop over the
// visible keys, with and without an offset and on strided views; its gradients by finite
// differences (gradcheck of its registered cases); its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/gradcheck.hpp"
#include "ops/attention.hpp"
#include "ops/registry.hpp"

using namespace dssm;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// out[b, h, i] = sum_j p_j v[b, h, j], p = softmax over the keys j <= i + offset of
// q[b, h, i] . k[b, h, j] / sqrt(d).
std::vector<double> plain_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    int64_t offset) {
  const int64_t heads = q.size(0) * q.size(1), T = q.size(2), S = k.size(2), d = q.size(3);
  const std::vector<double> qs = q.to_vector<double>(), ks = k.to_vector<double>(),
                            vs = v.to_vector<double>();
  std::vector<double> out(static_cast<size_t>(heads * T * d), 0.0);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < T; ++i) {
      const int64_t visible = std::min(i + offset + 1, S);
      std::vector<double> weights(static_cast<size_t>(visible));
      double largest = -std::numeric_limits<double>::infinity(), total = 0;
      for (int64_t j = 0; j < visible; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += qs[(h * T + i) * d + c] * ks[(h * S + j) * d + c];
        weights[j] = dot / std::sqrt(static_cast<double>(d));
        largest = std::max(largest, weights[j]);
      }
      for (double& w : weights) total += (w = std::exp(w - largest));
      for (int64_t j = 0; j < visible; ++j) {
        for (int64_t c = 0; c < d; ++c) {
          out[(h * T + i) * d + c] += weights[j] / total * vs[(h * S + j) * d + c];
        }
      }
    }
  }
  return out;
}

struct Case {
  int64_t batch, heads, queries, keys, dim, offset;
};

}  // namespace

TEST_CASE("causal_attention equals a plain loop over the keys j <= i + offset", "[attention]") {
  Generator gen(11);
  // Training (offset 0), a KV cache (offset = S - T), one decoding step, and an offset past S - T.
  for (const Case& c : {Case{2, 3, 5, 5, 4, 0}, Case{1, 2, 3, 7, 8, 4}, Case{1, 2, 1, 9, 5, 8},
                        Case{2, 1, 4, 6, 3, 3}}) {
    INFO("T " << c.queries << ", S " << c.keys << ", offset " << c.offset);
    const Tensor q = Tensor::randn({c.batch, c.heads, c.queries, c.dim}, gen, DType::f64);
    const Tensor k = Tensor::randn({c.batch, c.heads, c.keys, c.dim}, gen, DType::f64);
    const Tensor v = Tensor::randn({c.batch, c.heads, c.keys, c.dim}, gen, DType::f64);
    const Tensor out = causal_attention(q, k, v, c.offset);
    CHECK(out.shape() == q.shape());
    CHECK(max_abs_diff(out.to_vector<double>(), plain_attention(q, k, v, c.offset)) < 1e-12);
    CHECK_FALSE(causal_attention_is_fused(q, k, v, c.offset));
  }
}

TEST_CASE("causal_attention reads heads split from [B, T, H, d] projections in place",
          "[attention]") {
  Generator gen(12);
  const auto split_heads = [&](int64_t length) {
    return Tensor::randn({2, length, 3, 4}, gen, DType::f64).permute({0, 2, 1, 3});
  };
  const Tensor q = split_heads(5), k = split_heads(7), v = split_heads(7);
  CHECK(max_abs_diff(causal_attention(q, k, v, 2).to_vector<double>(),
                     plain_attention(q.contiguous(), k.contiguous(), v.contiguous(), 2)) < 1e-12);
}

TEST_CASE("causal_attention's gradients pass gradcheck", "[attention]") {
  int checked = 0;
  for (const GradcheckCase& c : registered_ops()) {
    if (c.name.rfind("causal_attention", 0) != 0) continue;
    const GradcheckResult r = gradcheck(c, Device::cpu());
    INFO(c.name << ": max abs err " << r.max_abs_err << " " << r.error);
    CHECK(r.passed);
    ++checked;
  }
  CHECK(checked == 2);
}

TEST_CASE("causal_attention rejects bad shapes, dtypes and offsets, naming the op", "[attention]") {
  const Tensor q = Tensor::zeros({1, 2, 3, 4}, DType::f64);
  const Tensor k = Tensor::zeros({1, 2, 5, 4}, DType::f64);
  CHECK_THROWS_WITH(causal_attention(q, k, Tensor::zeros({1, 2, 5, 3}, DType::f64), 2),
                    Contains("causal_attention") && Contains("k and v [B, H, S, d]"));
  CHECK_THROWS_WITH(causal_attention(q.reshape({2, 3, 4}), k, k, 2),
                    Contains("causal_attention") && Contains("q [B, H, T, d]"));
  CHECK_THROWS_WITH(causal_attention(q, Tensor::zeros({1, 2, 5, 8}, DType::f64), k, 2),
                    Contains("causal_attention"));
  CHECK_THROWS_WITH(causal_attention(q, k.to(DType::f32), k, 2),
                    Contains("causal_attention") && Contains("one floating dtype"));
  CHECK_THROWS_WITH(causal_attention(q.to(DType::i64), k.to(DType::i64), k.to(DType::i64), 2),
                    Contains("one floating dtype"));
  CHECK_THROWS_WITH(causal_attention(q, k, k, -1),
                    Contains("causal_attention") && Contains("offset >= 0"));
}
