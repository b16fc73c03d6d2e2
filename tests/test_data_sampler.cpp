// WindowSampler: windows are slices of the stream, drawn in a deterministic order from (seed,
// sample), resumable from a cursor, disjoint across data-parallel ranks and between splits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "tensor/error.hpp"
#include "tests/test_data_helpers.hpp"
#include "train/data/permutation.hpp"
#include "train/data/window_sampler.hpp"

using namespace dssm::data;

namespace {

// A flat shard of random documents; returns the concatenated stream.
std::vector<int32_t> make_dataset(const std::string& path, std::mt19937_64& rng, int documents) {
  auto writer = make_shard_writer(ShardFormat::flat, path, TokenType::u16);
  std::vector<int32_t> stream;
  for (const auto& d : dssm::test::random_documents(rng, documents, 300, 32000)) {
    writer->add_document(d);
    stream.insert(stream.end(), d.begin(), d.end());
  }
  writer->commit();
  return stream;
}

std::vector<int32_t> draw(WindowSampler& sampler, int64_t batch) {
  std::vector<int32_t> out(static_cast<size_t>(batch * sampler.window_length()));
  sampler.next_batch(batch, out.data());
  return out;
}

}  // namespace

TEST_CASE("RandomPermutation is a bijection of [0, n), different per key", "[data]") {
  auto rng = dssm::test::fresh_rng();
  for (uint64_t n : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{17}, uint64_t{1000},
                     uint64_t{4097} + rng() % 5000}) {
    const RandomPermutation p(n, rng());
    std::vector<bool> seen(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t j = p(i);
      REQUIRE(j < n);
      REQUIRE_FALSE(seen[j]);
      seen[j] = true;
    }
  }
  const RandomPermutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  CHECK(same < 20);
}

TEST_CASE("Windows are stream slices of seq_len + 1 tokens; an epoch covers each once", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  const auto stream = make_dataset(dir / "d.tok", rng, 200);
  const TokenDataset data = TokenDataset::open({dir / "d.tok"});
  const int64_t L = 64;
  WindowSampler sampler(data, {.seq_len = L, .seed = rng(), .validation_fraction = 0});
  const int64_t n = sampler.windows_per_epoch();
  CHECK(n == (static_cast<int64_t>(stream.size()) - 1) / L);
  std::set<int64_t> starts;
  for (int64_t i = 0; i < n; ++i) {
    const auto window = draw(sampler, 1);
    // Find where the window sits: window w starts at token w * L.
    const int64_t w = sampler.window_of_sample(i);
    starts.insert(w);
    REQUIRE(std::equal(window.begin(), window.end(), stream.begin() + w * L));
  }
  CHECK(static_cast<int64_t>(starts.size()) == n);
  CHECK(sampler.epoch() == 1);
}

TEST_CASE("The same seed gives the same batches; another seed other ones", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  make_dataset(dir / "d.tok", rng, 100);
  const TokenDataset data = TokenDataset::open({dir / "d.tok"});
  const uint64_t seed = rng();
  WindowSampler a(data, {.seq_len = 32, .seed = seed}), b(data, {.seq_len = 32, .seed = seed});
  WindowSampler c(data, {.seq_len = 32, .seed = seed + 1});
  for (int step = 0; step < 10; ++step) {
    const auto batch = draw(a, 4);
    CHECK(batch == draw(b, 4));
    CHECK(batch != draw(c, 4));
  }
}

TEST_CASE("Restoring a cursor continues exactly, across epochs", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  make_dataset(dir / "d.tok", rng, 40);
  const TokenDataset data = TokenDataset::open({dir / "d.tok"});
  const SamplerOptions options{.seq_len = 16, .seed = rng(), .rank = 1, .world_size = 3};
  WindowSampler original(data, options);
  const int64_t steps = original.windows_per_epoch() / 3 / 5 + 3;  // runs past one epoch
  for (int64_t s = 0; s < steps; ++s) draw(original, 5);
  const nlohmann::json saved = to_json(original.cursor());

  WindowSampler resumed(data, options);
  resumed.restore(cursor_from_json(nlohmann::json::parse(saved.dump())));
  for (int s = 0; s < 2 * steps; ++s) REQUIRE(draw(original, 5) == draw(resumed, 5));

  WindowSampler other_rank(data, {.seq_len = 16, .seed = options.seed, .rank = 0, .world_size = 3});
  CHECK_THROWS_AS(other_rank.restore(original.cursor()), dssm::Error);
}

TEST_CASE("Data-parallel ranks draw disjoint windows that together cover an epoch", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  make_dataset(dir / "d.tok", rng, 150);
  const TokenDataset data = TokenDataset::open({dir / "d.tok"});
  const int world = 4;
  const uint64_t seed = rng();
  std::vector<int64_t> all;
  int64_t per_epoch = 0;
  for (int rank = 0; rank < world; ++rank) {
    WindowSampler sampler(data, {.seq_len = 32, .seed = seed, .rank = rank, .world_size = world});
    per_epoch = sampler.windows_per_epoch();
    for (int64_t k = 0; k < per_epoch / world; ++k) {
      all.push_back(sampler.window_of_sample(k * world + rank));
    }
  }
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());  // no window twice
  CHECK(static_cast<int64_t>(all.size()) == per_epoch / world * world);
}

TEST_CASE("Validation holds out the last documents; bos_first starts windows with <bos>",
          "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  make_dataset(dir / "d.tok", rng, 100);
  const TokenDataset data = TokenDataset::open({dir / "d.tok"});
  const SamplerOptions train{.seq_len = 8, .seed = 3, .validation_fraction = 0.1};
  SamplerOptions validation = train;
  validation.split = Split::validation;
  const WindowSampler t(data, train), v(data, validation);
  CHECK(t.split_begin() == 0);
  CHECK(t.split_end() == data.document_start(90));  // ceil(0.1 * 100) = 10 held-out documents
  CHECK(v.split_begin() == data.document_start(90));
  CHECK(v.split_end() == data.num_tokens());

  SamplerOptions bos = train;
  bos.bos_first = true;
  bos.bos_id = 1;
  WindowSampler b(data, bos);
  const auto batch = draw(b, 6);
  for (int i = 0; i < 6; ++i) {
    const int32_t* window = batch.data() + i * 9;
    CHECK(window[0] == 1);
    std::vector<int32_t> expected(8);
    data.read(b.window_of_sample(i) * 8, 8, expected.data());
    CHECK(std::equal(expected.begin(), expected.end(), window + 1));
  }
  CHECK_THROWS_WITH(WindowSampler(data, {.seq_len = 100000}),
                    Catch::Contains("fewer than one window"));
}
