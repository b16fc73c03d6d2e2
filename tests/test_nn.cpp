// nn layers against plain loops on fresh random inputs: Linear, Embedding, RMSNorm, GateMLP,
// CausalConv1d, Dropout, the initialisers, and every knob of DenseHiddenConnection.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nn/conv1d.hpp"
#include "nn/dense_hidden_connection.hpp"
#include "nn/dropout.hpp"
#include "nn/embedding.hpp"
#include "nn/gate_mlp.hpp"
#include "nn/init.hpp"
#include "nn/linear.hpp"
#include "nn/rms_norm.hpp"
#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

using namespace dssm;
using Vec = std::vector<double>;

namespace {

Vec values(const Tensor& t) {
  return t.to_vector<double>();
}

// y [rows, out] = x [rows, in] W^T, W [out, in], all row-major.
Vec linear_rows(const Vec& x, const Vec& w, int64_t out, int64_t in) {
  const int64_t rows = static_cast<int64_t>(x.size()) / in;
  Vec y(rows * out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < in; ++k) y[r * out + o] += x[r * in + k] * w[o * in + k];
  return y;
}

double silu_of(double v) {
  return v / (1.0 + std::exp(-v));
}
Vec silu_all(Vec v) {
  for (double& e : v) e = silu_of(e);
  return v;
}
Vec times(const Vec& a, const Vec& b) {
  Vec y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = a[i] * b[i];
  return y;
}
Vec plus(const Vec& a, const Vec& b) {
  Vec y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = a[i] + b[i];
  return y;
}
Vec gate_mlp_rows(nn::GateMLP& mlp, const Vec& x, int64_t in, int64_t hidden, int64_t out) {
  const Vec h = silu_all(linear_rows(x, values(mlp.fc1().weight()), hidden, in));
  return linear_rows(h, values(mlp.fc2().weight()), out, hidden);
}

void require_close(const Vec& actual, const Vec& expected, double tol = 1e-12) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) CHECK(actual[i] == Approx(expected[i]).margin(tol));
}

}  // namespace

TEST_CASE("Linear computes x W^T + b with W stored [out, in]", "[nn]") {
  Generator gen(101);
  for (bool bias : {false, true}) {
    nn::Linear linear(5, 3, bias, gen);
    linear.to(DType::f64);
    REQUIRE(linear.weight().shape() == Shape{3, 5});
    if (bias) nn::init::normal(linear.bias(), 1.0, gen);
    const Tensor x = Tensor::randn({2, 4, 5}, gen, DType::f64);
    const Tensor y = linear.forward(x);
    REQUIRE(y.shape() == Shape{2, 4, 3});
    Vec expected = linear_rows(values(x), values(linear.weight()), 3, 5);
    if (bias) {
      const Vec b = values(linear.bias());
      for (size_t i = 0; i < expected.size(); ++i) expected[i] += b[i % 3];
    }
    require_close(values(y), expected);
    // The features along dim 1 ([batch, in, length]): the same map, W x + b.
    const Tensor by_channels = linear.forward_channels(x.transpose(1, 2).contiguous());
    require_close(values(by_channels.transpose(1, 2).contiguous()), expected);
    CHECK(linear.num_parameters() == (bias ? 18 : 15));
  }
  nn::Linear linear(5, 3, false, gen);
  CHECK_THROWS_WITH(linear.forward(Tensor::ones({2, 4})),
                    Catch::Contains("Linear") && Catch::Contains("[..., 5]"));
  CHECK_THROWS_WITH(linear.forward_channels(Tensor::ones({2, 4, 5})),
                    Catch::Contains("Linear") && Catch::Contains("[batch, 5, length]"));
}

TEST_CASE("Embedding looks up rows and rejects ids outside the vocabulary", "[nn]") {
  Generator gen(102);
  nn::Embedding embedding(7, 4, gen);
  const Tensor ids = Tensor::from_vector<int64_t>({3, 0, 6, 3}, {2, 2});
  const Vec out = values(embedding.forward(ids)), table = values(embedding.weight());
  const std::vector<int64_t> id_list = {3, 0, 6, 3};
  for (size_t p = 0; p < id_list.size(); ++p)
    for (int64_t j = 0; j < 4; ++j) CHECK(out[p * 4 + j] == table[id_list[p] * 4 + j]);
  CHECK_THROWS_AS(embedding.forward(Tensor::from_vector<int64_t>({7}, {1})), Error);
  CHECK_FALSE(embedding.named_parameters()[0].weight_decay);
}

TEST_CASE("RMSNorm divides by the root mean square and scales by its weight", "[nn]") {
  Generator gen(103);
  nn::RMSNorm norm(6, 1e-5);
  norm.to(DType::f64);
  nn::init::normal(norm.weight(), 1.0, gen);
  const Tensor x = Tensor::randn({3, 6}, gen, DType::f64);
  const Vec xv = values(x), w = values(norm.weight()), y = values(norm.forward(x));
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int j = 0; j < 6; ++j) ms += xv[r * 6 + j] * xv[r * 6 + j] / 6.0;
    for (int j = 0; j < 6; ++j)
      CHECK(y[r * 6 + j] == Approx(xv[r * 6 + j] / std::sqrt(ms + 1e-5) * w[j]).margin(1e-12));
  }
}

TEST_CASE("GateMLP is W2 silu(W1 x) without biases", "[nn]") {
  Generator gen(104);
  nn::GateMLP mlp(8, 3, 5, gen);
  mlp.to(DType::f64);
  CHECK(mlp.num_parameters() == 8 * 3 + 3 * 5);
  const Tensor x = Tensor::randn({4, 8}, gen, DType::f64);
  require_close(values(mlp.forward(x)), gate_mlp_rows(mlp, values(x), 8, 3, 5));
}

TEST_CASE("CausalConv1d: output t sees inputs t-width+1 .. t, step agrees", "[nn]") {
  Generator gen(105);
  const int64_t B = 2, C = 3, T = 6, W = 4;
  nn::CausalConv1d conv(C, W, true, gen);
  conv.to(DType::f64);
  const Tensor x = Tensor::randn({B, C, T}, gen, DType::f64);
  const Vec xv = values(x), w = values(conv.weight()), b = values(conv.bias());
  const Vec y = values(conv.forward(x));
  for (int64_t n = 0; n < B; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < T; ++t) {
        double s = b[c];
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1) + k;
          if (src >= 0) s += w[c * W + k] * xv[(n * C + c) * T + src];
        }
        CHECK(y[(n * C + c) * T + t] == Approx(s).margin(1e-12));
      }
}

TEST_CASE("Dropout: identity in eval mode, kept values scaled by 1/(1-p), seeded", "[nn]") {
  Generator gen(106), gen_again(106);
  nn::Dropout dropout(0.25, gen), dropout_again(0.25, gen_again);
  const Tensor x = Tensor::randn({1000}, gen, DType::f64);
  gen.set_state(7, 0);
  gen_again.set_state(7, 0);
  const Vec xv = values(x), y = values(dropout.forward(x));
  int kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (y[i] != 0.0) {
      ++kept;
      CHECK(y[i] == Approx(xv[i] / 0.75).margin(1e-12));
    }
  }
  CHECK(kept > 650);
  CHECK(kept < 850);
  CHECK(values(dropout_again.forward(x)) == y);
  dropout.eval();
  CHECK(values(dropout.forward(x)) == xv);
  CHECK_THROWS_WITH(nn::Dropout(1.0, gen), Catch::Contains("p in [0, 1)"));
}

TEST_CASE("initialisers: deterministic per seed, xavier within its bound, normal's spread",
          "[nn]") {
  Generator a(7), b(7);
  const Tensor w1 = Tensor::empty({200, 100}), w2 = Tensor::empty({200, 100});
  nn::init::xavier_uniform(w1, 0.5, a);
  nn::init::xavier_uniform(w2, 0.5, b);
  CHECK(values(w1) == values(w2));
  const double bound = 0.5 * std::sqrt(6.0 / 300.0);
  double max_abs = 0;
  for (double v : values(w1)) max_abs = std::max(max_abs, std::abs(v));
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.95 * bound);
  nn::init::normal(w1, 0.02, a);
  double sq = 0;
  for (double v : values(w1)) sq += v * v;
  CHECK(std::sqrt(sq / 20000.0) == Approx(0.02).epsilon(0.03));
  nn::init::zeros(w1);
  nn::init::ones(w2);
  CHECK(values(w1) == Vec(20000, 0.0));
  CHECK(values(w2) == Vec(20000, 1.0));
}

// ---- DenseHiddenConnection ---------------------------------------------------------------------

namespace {

struct DenseInputs {
  Tensor hidden, x;
  std::vector<Tensor> previous;
};

DenseInputs dense_inputs(int64_t count, int64_t input_dim, int64_t width, Generator& gen) {
  DenseInputs in{Tensor::randn({2, 3, width}, gen, DType::f64),
                 Tensor::randn({2, 3, input_dim}, gen, DType::f64),
                 {}};
  for (int64_t i = 0; i < count; ++i)
    in.previous.push_back(Tensor::randn({2, 3, width}, gen, DType::f64));
  return in;
}

nn::ModuleList<nn::GateMLP>& mlp_gates(nn::DenseHiddenConnection& dense) {
  for (auto& [name, child] : dense.children())
    if (name == "gates") return dynamic_cast<nn::ModuleList<nn::GateMLP>&>(*child);
  FAIL("no gates");
  throw;
}

template <typename M>
M& child(nn::Module& module, const std::string& name) {
  for (auto& [n, c] : module.children())
    if (n == name) return dynamic_cast<M&>(*c);
  FAIL("no child " << name);
  throw;
}

}  // namespace

TEST_CASE("DenseHiddenConnection, identity + MLP + add: h + sum_i silu(MLP(x)) * h^{l-i}", "[nn]") {
  Generator gen(201);
  const int64_t in = 64, width = 6;
  for (bool shared : {true, false}) {
    nn::DenseConnectionOptions options;  // identity, mlp, add, m = 2
    options.shared = shared;
    nn::DenseHiddenConnection dense(3, in, width, options, gen);
    dense.to(DType::f64);
    REQUIRE(dense.num_previous() == 2);
    // in / 32 = 2 hidden units per gate MLP; one MLP shared, or one per predecessor.
    CHECK(dense.num_parameters() == (shared ? 1 : 2) * (in * 2 + 2 * width));
    const DenseInputs inputs = dense_inputs(2, in, width, gen);
    const Vec x = values(inputs.x);
    Vec expected = values(inputs.hidden);
    for (size_t i = 0; i < 2; ++i) {
      const Vec gate = silu_all(gate_mlp_rows(mlp_gates(dense)[shared ? 0 : i], x, in, 2, width));
      expected = plus(expected, times(gate, values(inputs.previous[i])));
    }
    require_close(values(dense.forward(inputs.hidden, inputs.x, inputs.previous)), expected);
  }
}

TEST_CASE("DenseHiddenConnection, linear projection + linear select, per-layer transitions",
          "[nn]") {
  Generator gen(202);
  const int64_t in = 5, width = 4;
  nn::DenseConnectionOptions options;
  options.projection = nn::DenseProjection::linear;
  options.select = nn::DenseSelect::linear;
  options.shared = false;
  options.m = 4;
  nn::DenseHiddenConnection dense(2, in, width, options, gen);  // layer 2: min(4, 2) = 2
  dense.to(DType::f64);
  REQUIRE(dense.num_previous() == 2);
  auto& projections = child<nn::ModuleList<nn::Linear>>(dense, "projections");
  auto& gates = child<nn::ModuleList<nn::Linear>>(dense, "gates");
  const DenseInputs inputs = dense_inputs(2, in, width, gen);
  Vec expected = values(inputs.hidden);
  for (size_t i = 0; i < 2; ++i) {
    const Vec proj =
        linear_rows(values(inputs.previous[i]), values(projections[i].weight()), width, width);
    const Vec gate = silu_all(linear_rows(values(inputs.x), values(gates[i].weight()), width, in));
    expected = plus(expected, times(proj, gate));
  }
  require_close(values(dense.forward(inputs.hidden, inputs.x, inputs.previous)), expected);
}

TEST_CASE("DenseHiddenConnection, select none + concat fusion + norm", "[nn]") {
  Generator gen(203);
  const int64_t in = 5, width = 3;
  nn::DenseConnectionOptions options;
  options.select = nn::DenseSelect::none;
  options.fusion = nn::DenseFusion::concat;
  options.m = 1;
  options.norm = true;
  nn::DenseHiddenConnection dense(4, in, width, options, gen);
  dense.to(DType::f64);
  REQUIRE(dense.num_previous() == 1);
  auto& fuse = child<nn::Linear>(dense, "fuse");
  REQUIRE(fuse.weight().shape() == Shape{width, 2 * width});
  const DenseInputs inputs = dense_inputs(1, in, width, gen);
  const Vec h = values(inputs.hidden), p = values(inputs.previous[0]);
  Vec joined;
  for (size_t r = 0; r < h.size() / width; ++r) {
    joined.insert(joined.end(), h.begin() + r * width, h.begin() + (r + 1) * width);
    joined.insert(joined.end(), p.begin() + r * width, p.begin() + (r + 1) * width);
  }
  Vec expected = linear_rows(joined, values(fuse.weight()), width, 2 * width);
  for (size_t r = 0; r < expected.size() / width; ++r) {
    double ms = 0;
    for (int64_t j = 0; j < width; ++j) ms += expected[r * width + j] * expected[r * width + j];
    ms /= width;
    for (int64_t j = 0; j < width; ++j) expected[r * width + j] /= std::sqrt(ms + 1e-6);
  }
  require_close(values(dense.forward(inputs.hidden, inputs.x, inputs.previous)), expected);
}

TEST_CASE("DenseHiddenConnection: which layers are dense (m, every, projection none)", "[nn]") {
  nn::DenseConnectionOptions options;
  options.m = 2;
  options.every = 2;
  const std::vector<int64_t> expected = {0, 0, 2, 0, 2, 0};
  for (int64_t layer = 0; layer < 6; ++layer)
    CHECK(nn::dense_inputs_of_layer(layer, options) == expected[layer]);
  options.every = 1;
  options.m = 4;
  CHECK(nn::dense_inputs_of_layer(3, options) == 3);
  CHECK(nn::dense_inputs_of_layer(7, options) == 4);
  options.projection = nn::DenseProjection::none;
  CHECK(nn::dense_inputs_of_layer(7, options) == 0);

  Generator gen(204);
  nn::DenseHiddenConnection none(5, 8, 4, options, gen);
  CHECK(none.num_parameters() == 0);
  const DenseInputs inputs = dense_inputs(0, 8, 4, gen);
  CHECK(none.forward(inputs.hidden, inputs.x, {}).same_storage(inputs.hidden));
}

TEST_CASE("DenseHiddenConnection with zero gates returns the hidden state unchanged", "[nn]") {
  Generator gen(205);
  nn::DenseHiddenConnection dense(2, 64, 5, nn::DenseConnectionOptions{}, gen);
  dense.to(DType::f64);
  nn::init::zeros(mlp_gates(dense)[0].fc2().weight());
  const DenseInputs inputs = dense_inputs(2, 64, 5, gen);
  CHECK(values(dense.forward(inputs.hidden, inputs.x, inputs.previous)) == values(inputs.hidden));
}

TEST_CASE("DenseHiddenConnection with its features along dim 1 is the last-dim form transposed",
          "[nn]") {
  Generator gen(207);
  const int64_t in = 64, width = 6;
  nn::DenseConnectionOptions shared_mlp;  // identity, mlp, shared: one product of the summed states
  nn::DenseConnectionOptions per_predecessor;
  per_predecessor.shared = false;
  nn::DenseConnectionOptions linear;
  linear.projection = nn::DenseProjection::linear;
  linear.select = nn::DenseSelect::linear;
  nn::DenseConnectionOptions concat;
  concat.select = nn::DenseSelect::none;
  concat.fusion = nn::DenseFusion::concat;
  for (nn::DenseConnectionOptions options : {shared_mlp, per_predecessor, linear, concat}) {
    options.m = 3;
    nn::DenseHiddenConnection dense(3, in, width, options, gen);
    dense.to(DType::f64);
    const DenseInputs inputs = dense_inputs(3, in, width, gen);
    const auto channels = [](const Tensor& t) { return t.transpose(1, 2).contiguous(); };
    std::vector<Tensor> previous;
    for (const Tensor& p : inputs.previous) previous.push_back(channels(p));
    const Tensor by_channels = dense.forward(channels(inputs.hidden), channels(inputs.x), previous,
                                             nn::DenseHiddenConnection::FeatureDim::channels);
    require_close(values(by_channels.transpose(1, 2).contiguous()),
                  values(dense.forward(inputs.hidden, inputs.x, inputs.previous)));
  }
  nn::DenseConnectionOptions normed;
  normed.norm = true;
  nn::DenseHiddenConnection dense(2, in, width, normed, gen);
  const DenseInputs inputs = dense_inputs(2, in, width, gen);
  CHECK_THROWS_WITH(
      dense.forward(inputs.hidden.transpose(1, 2), inputs.x.transpose(1, 2),
                    {inputs.previous[0].transpose(1, 2), inputs.previous[1].transpose(1, 2)},
                    nn::DenseHiddenConnection::FeatureDim::channels),
      Catch::Contains("norm after fusion"));
}

TEST_CASE("DenseHiddenConnection rejects inconsistent inputs, naming what it expected", "[nn]") {
  Generator gen(206);
  nn::DenseHiddenConnection dense(2, 8, 4, nn::DenseConnectionOptions{}, gen);
  const DenseInputs inputs = dense_inputs(2, 8, 4, gen);
  const auto f32 = [](const Tensor& t) { return t.to(DType::f32); };
  const Tensor h = f32(inputs.hidden), x = f32(inputs.x);
  const std::vector<Tensor> prev = {f32(inputs.previous[0]), f32(inputs.previous[1])};
  CHECK_THROWS_WITH(dense.forward(h, x, {prev[0]}),
                    Catch::Contains("expected 2 previous hidden states, got 1"));
  CHECK_THROWS_WITH(dense.forward(h, x, {prev[0], Tensor::ones({2, 3, 5})}),
                    Catch::Contains("previous[1]"));
  CHECK_THROWS_WITH(dense.forward(h, Tensor::ones({2, 3, 7}), prev), Catch::Contains("[..., 8]"));
  nn::DenseConnectionOptions bad;
  bad.every = 0;
  CHECK_THROWS_WITH(nn::DenseHiddenConnection(2, 8, 4, bad, gen), Catch::Contains("every >= 1"));
}
