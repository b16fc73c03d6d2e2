// Tensor basics: creation, views without copies, broadcasting, dtype round trips, the RNG.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "tensor/tensor.hpp"

using namespace dssm;

TEST_CASE("views share storage and index like the strides say", "[tensor]") {
  Generator gen(7);
  const Tensor x = Tensor::randn({2, 3, 4}, gen, DType::f64);
  const std::vector<double> v = x.to_vector<double>();
  auto at = [&](int64_t i, int64_t j, int64_t k) { return v[(i * 3 + j) * 4 + k]; };

  const Tensor p = x.permute({2, 0, 1});
  CHECK(p.same_storage(x));
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK_FALSE(p.is_contiguous());
  const std::vector<double> pv = p.to_vector<double>();
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) CHECK(pv[(k * 2 + i) * 3 + j] == at(i, j, k));

  const Tensor n = x.narrow(2, 1, 2).select(0, 1);  // x[1, :, 1:3]
  CHECK(n.same_storage(x));
  const std::vector<double> nv = n.to_vector<double>();
  for (int64_t j = 0; j < 3; ++j)
    for (int64_t k = 0; k < 2; ++k) CHECK(nv[j * 2 + k] == at(1, j, k + 1));

  const Tensor r = x.reshape({6, 4});
  CHECK(r.same_storage(x));  // contiguous: a view
  CHECK(p.reshape({4, 6}).same_storage(x));  // dims 1, 2 of p are still adjacent in memory
  const Tensor t = x.transpose(1, 2);         // [2, 4, 3], strides [12, 1, 4]
  const Tensor rt = t.reshape({2, 12});       // cannot merge (4, 3) with strides (1, 4): a copy
  CHECK_FALSE(rt.same_storage(x));
  CHECK(rt.to_vector<double>() == t.contiguous().to_vector<double>());
  CHECK(rt.to_vector<double>()[1 * 12 + 2 * 3 + 1] == at(1, 1, 2));
  CHECK_THROWS_WITH(t.view({2, 12}), Catch::Contains("without a copy"));

  const Tensor e = x.narrow(1, 0, 1).expand({5, 2, 3, 4});  // e[a, i, j, k] = x[i, 0, k]
  CHECK(e.same_storage(x));
  CHECK(e.strides()[0] == 0);
  CHECK(e.strides()[2] == 0);
  CHECK(e.to_vector<double>()[((1 * 2 + 1) * 3 + 2) * 4 + 3] == at(1, 0, 3));

  const Tensor u = x.unsqueeze(1).squeeze(1);
  CHECK(u.shape() == x.shape());
  CHECK(u.to_vector<double>() == v);
}

TEST_CASE("broadcasting follows NumPy rules", "[tensor]") {
  Generator gen(11);
  const Tensor a = Tensor::randn({3, 1, 4}, gen, DType::f64);
  const Tensor b = Tensor::randn({2, 4}, gen, DType::f64);
  const Tensor c = a * b;
  REQUIRE(c.shape() == Shape{3, 2, 4});
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 4; ++k) CHECK(cv[(i * 2 + j) * 4 + k] == av[i * 4 + k] * bv[j * 4 + k]);
  CHECK_THROWS_WITH(a + Tensor::ones({2, 3}, DType::f64), Catch::Contains("cannot be broadcast"));
  CHECK_THROWS_WITH(a + Tensor::ones({3, 1, 4}, DType::f32), Catch::Contains("dtype mismatch"));
}

TEST_CASE("bf16 rounds to nearest even", "[tensor]") {
  auto bits_of = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto from_bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  // 1 + 2^-8 lies exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1).
  CHECK(static_cast<float>(bf16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  CHECK(static_cast<float>(bf16(1.0f + 3 * std::ldexp(1.0f, -8))) == 1.0f + std::ldexp(1.0f, -6));
  // Just above halfway rounds up.
  CHECK(bf16(from_bits(bits_of(1.0f) + 0x8001)).bits == (bits_of(1.0f) >> 16) + 1);
  CHECK(std::isnan(static_cast<float>(bf16(std::nanf("")))));
  CHECK(std::isinf(static_cast<float>(bf16(INFINITY))));

  // Round trips through tensors: f32 -> bf16 -> f32 keeps 8 bits of mantissa; f64 -> f32 exact
  // for representable values; integers convert exactly.
  Generator gen(3);
  const Tensor x = Tensor::randn({1000}, gen);
  const auto back = x.to(DType::bf16).to(DType::f32).to_vector<float>();
  const auto orig = x.to_vector<float>();
  for (size_t i = 0; i < orig.size(); ++i) {
    CHECK(back[i] == static_cast<float>(bf16(orig[i])));
    CHECK(std::abs(back[i] - orig[i]) <= std::abs(orig[i]) * std::ldexp(1.0, -8));
  }
  CHECK(x.to(DType::f64).to(DType::f32).to_vector<float>() == orig);
  const Tensor ids = Tensor::from_vector<int64_t>({-3, 0, 7, 1 << 20}, {4});
  CHECK(ids.to(DType::i32).to(DType::f64).to(DType::i64).to_vector<int64_t>() ==
        std::vector<int64_t>{-3, 0, 7, 1 << 20});
}

TEST_CASE("the counter-based RNG is deterministic and well distributed", "[tensor]") {
  Generator g1(42), g2(42), g3(43);
  const auto a = Tensor::rand({10000}, g1).to_vector<float>();
  const auto b = Tensor::rand({10000}, g2).to_vector<float>();
  const auto c = Tensor::rand({10000}, g3).to_vector<float>();
  CHECK(a == b);
  CHECK(a != c);
  // Drawing 4 then 6 elements gives the same stream as drawing 10 at once.
  Generator g4(9), g5(9);
  auto first = Tensor::rand({4}, g4).to_vector<float>();
  const auto second = Tensor::rand({6}, g4).to_vector<float>();
  first.insert(first.end(), second.begin(), second.end());
  CHECK(first == Tensor::rand({10}, g5).to_vector<float>());
  // Moments: uniform mean 1/2, variance 1/12; normal mean 0, variance 1.
  double mean = 0, var = 0;
  for (float x : a) mean += x;
  mean /= a.size();
  for (float x : a) var += (x - mean) * (x - mean);
  var /= a.size();
  CHECK(mean == Approx(0.5).margin(0.01));
  CHECK(var == Approx(1.0 / 12).margin(0.005));
  Generator g6(5);
  const auto n = Tensor::randn({20000}, g6, DType::f64).to_vector<double>();
  double nm = 0, nv = 0;
  for (double x : n) nm += x;
  nm /= n.size();
  for (double x : n) nv += (x - nm) * (x - nm);
  nv /= n.size();
  CHECK(nm == Approx(0.0).margin(0.03));
  CHECK(nv == Approx(1.0).margin(0.03));
  for (float x : a) REQUIRE((x >= 0.0f && x < 1.0f));
}

TEST_CASE("creation functions", "[tensor]") {
  CHECK(Tensor::arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(Tensor::arange(0.5, 2.0, 0.5).to_vector<double>() == std::vector<double>{0.5, 1.0, 1.5});
  CHECK(Tensor::full({2, 2}, 3.25, DType::bf16).to_vector<float>() ==
        std::vector<float>{3.25f, 3.25f, 3.25f, 3.25f});
  CHECK(Tensor::zeros({0, 3}).numel() == 0);
  CHECK(Tensor::scalar(2.5).item() == 2.5);
  CHECK_THROWS_WITH(Tensor::empty({2, -1}), Catch::Contains("negative dimension"));
  CHECK_THROWS_WITH(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Catch::Contains("3 values"));
  CHECK_THROWS_WITH(Tensor::ones({2}).item(), Catch::Contains("one element"));
}
