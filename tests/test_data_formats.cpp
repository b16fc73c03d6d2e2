// Files built byte by byte from each format's documented layout (docs/data.md), not with our
// writers, must read back as the documents they were built from.
#include <catch2/catch.hpp>

#include "tests/test_data_helpers.hpp"
#include "train/data/token_dataset.hpp"

using namespace dssm::data;
using dssm::test::Bytes;

namespace {

// Megatron MMIDIDX: each document is a list of sequences of tokens of type T (dtype `code`).
template <typename T>
void write_megatron(const std::string& prefix, uint8_t code,
                    const std::vector<std::vector<std::vector<T>>>& documents) {
  Bytes bin, idx;
  std::vector<int32_t> lengths;
  std::vector<int64_t> pointers, doc_index{0};
  for (const auto& document : documents) {
    for (const auto& sequence : document) {
      pointers.push_back(static_cast<int64_t>(bin.data.size()));
      lengths.push_back(static_cast<int32_t>(sequence.size()));
      for (T t : sequence) bin.put<T>(t);
    }
    doc_index.push_back(static_cast<int64_t>(lengths.size()));
  }
  idx.put_raw("MMIDIDX\0\0", 9).put<uint64_t>(1).put<uint8_t>(code);
  idx.put<uint64_t>(lengths.size()).put<uint64_t>(doc_index.size());
  for (int32_t l : lengths) idx.put(l);
  for (int64_t p : pointers) idx.put(p);
  for (int64_t d : doc_index) idx.put(d);
  bin.save(prefix + ".bin");
  idx.save(prefix + ".idx");
}

template <typename T>
void check_megatron_dtype(uint8_t code, TokenType expected_type, int32_t vocab) {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::uniform_int_distribution<int> pieces(1, 3), length(1, 40);
  std::vector<std::vector<std::vector<T>>> documents(7);
  std::vector<std::vector<int32_t>> expected;
  for (auto& document : documents) {
    expected.emplace_back();
    document.resize(static_cast<size_t>(pieces(rng)));
    for (auto& sequence : document) {
      sequence.resize(static_cast<size_t>(length(rng)));
      for (T& t : sequence) {
        t = static_cast<T>(id(rng));
        expected.back().push_back(static_cast<int32_t>(t));
      }
    }
  }
  write_megatron<T>(dir / "shard", code, documents);

  const TokenDataset data = TokenDataset::open({dir / "shard.idx"}, {.vocab_size = vocab});
  REQUIRE(data.shards().size() == 1);
  CHECK(data.shards()[0].format == ShardFormat::megatron);
  CHECK(data.shards()[0].dtype == expected_type);
  REQUIRE(data.num_documents() == 7);
  int64_t tokens = 0;
  for (int64_t d = 0; d < 7; ++d) {
    CHECK(data.document(d) == expected[static_cast<size_t>(d)]);
    tokens += static_cast<int64_t>(expected[static_cast<size_t>(d)].size());
  }
  CHECK(data.num_tokens() == tokens);
}

}  // namespace

TEST_CASE("Megatron .bin/.idx of every dtype code read as built", "[data]") {
  check_megatron_dtype<uint8_t>(1, TokenType::u8, 256);
  check_megatron_dtype<int8_t>(2, TokenType::i8, 128);
  check_megatron_dtype<int16_t>(3, TokenType::i16, 32000);
  check_megatron_dtype<int32_t>(4, TokenType::i32, 128256);
  check_megatron_dtype<int64_t>(5, TokenType::i64, 128256);
  check_megatron_dtype<double>(6, TokenType::f64, 50000);
  check_megatron_dtype<float>(7, TokenType::f32, 50000);
  check_megatron_dtype<uint16_t>(8, TokenType::u16, 50277);
}

TEST_CASE("A Megatron dataset opens from its prefix, its .bin or its .idx", "[data]") {
  dssm::test::ScratchDir dir;
  write_megatron<uint16_t>(dir / "pile", 8, {{{5, 6, 7}}, {{8}, {9, 10}}});
  for (const std::string& path : {dir / "pile", dir / "pile.bin", dir / "pile.idx"}) {
    const TokenDataset data = TokenDataset::open({path});
    CHECK(data.num_documents() == 2);
    CHECK(data.document(1) == std::vector<int32_t>{8, 9, 10});
  }
}

namespace {

template <typename T>
void write_llmc(const std::string& path, int32_t version, const std::vector<T>& tokens) {
  Bytes file;
  file.put<int32_t>(20240520).put<int32_t>(version).put<int32_t>(
      static_cast<int32_t>(tokens.size()));
  for (int i = 3; i < 256; ++i) file.put<int32_t>(0);
  for (T t : tokens) file.put<T>(t);
  file.save(path);
}

// llm.c puts the separator before each document; returns the documents with their separator.
template <typename T>
std::vector<std::vector<int32_t>> llmc_stream(std::mt19937_64& rng, T separator, int32_t vocab,
                                              std::vector<T>& tokens) {
  std::vector<std::vector<int32_t>> documents;
  for (const auto& body : dssm::test::random_documents(rng, 9, 30, vocab)) {
    documents.push_back({static_cast<int32_t>(separator)});
    tokens.push_back(separator);
    for (int32_t t : body) {
      const T id = t == static_cast<int32_t>(separator) ? T{0} : static_cast<T>(t);
      tokens.push_back(id);
      documents.back().push_back(static_cast<int32_t>(id));
    }
  }
  return documents;
}

}  // namespace

TEST_CASE("llm.c shards, versions 1 (uint16) and 2 (uint32), read as built", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();

  std::vector<uint16_t> v1;
  const auto gpt2_documents = llmc_stream<uint16_t>(rng, 50256, 50257, v1);
  write_llmc(dir / "gpt2_000000.bin", 1, v1);
  const TokenDataset gpt2 = TokenDataset::open({dir / "gpt2_000000.bin"}, {.vocab_size = 50257});
  CHECK(gpt2.shards()[0].format == ShardFormat::llmc);
  CHECK(gpt2.shards()[0].dtype == TokenType::u16);
  REQUIRE(gpt2.num_documents() == 9);
  CHECK(gpt2.num_tokens() == static_cast<int64_t>(v1.size()));
  for (int64_t d = 0; d < 9; ++d) CHECK(gpt2.document(d) == gpt2_documents[size_t(d)]);

  std::vector<uint32_t> v2;
  const auto llama3_documents = llmc_stream<uint32_t>(rng, 128000, 128256, v2);
  write_llmc(dir / "llama3_000000.bin", 2, v2);
  const TokenDataset llama3 = TokenDataset::open({dir / "llama3_000000.bin"});
  CHECK(llama3.shards()[0].dtype == TokenType::u32);
  REQUIRE(llama3.num_documents() == 9);
  for (int64_t d = 0; d < 9; ++d) CHECK(llama3.document(d) == llama3_documents[size_t(d)]);
}

TEST_CASE("Flat token files (uint16, uint32) read as built from the documented layout", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  for (const uint32_t width : {2u, 4u}) {
    const int32_t vocab = width == 2 ? 65536 : 200000;
    const auto documents = dssm::test::random_documents(rng, 11, 25, vocab);
    Bytes file;
    uint64_t tokens = 0;
    for (const auto& d : documents) tokens += d.size();
    file.put_raw("DSSMTOK\0", 8).put<uint32_t>(1).put<uint32_t>(width);
    file.put<uint64_t>(tokens).put<uint64_t>(documents.size());
    std::vector<uint64_t> offsets{0};
    for (const auto& d : documents) {
      for (int32_t t : d)
        width == 2 ? file.put<uint16_t>(uint16_t(t)) : file.put<uint32_t>(uint32_t(t));
      offsets.push_back(offsets.back() + d.size());
    }
    while (file.data.size() % 8 != 0) file.put<uint8_t>(0);
    for (uint64_t o : offsets) file.put(o);
    const std::string path = dir / ("flat" + std::to_string(width) + ".tok");
    file.save(path);

    const TokenDataset data = TokenDataset::open({path}, {.vocab_size = vocab});
    CHECK(data.shards()[0].format == ShardFormat::flat);
    CHECK(data.shards()[0].dtype == (width == 2 ? TokenType::u16 : TokenType::u32));
    REQUIRE(data.num_documents() == 11);
    CHECK(data.num_tokens() == static_cast<int64_t>(tokens));
    for (int64_t d = 0; d < 11; ++d) CHECK(data.document(d) == documents[size_t(d)]);
  }
}

TEST_CASE("A dataset of several shards and globs is one stream, in order", "[data]") {
  dssm::test::ScratchDir dir;
  write_megatron<uint16_t>(dir / "part_000001", 8, {{{3, 4}}, {{5}}});
  write_megatron<uint16_t>(dir / "part_000000", 8, {{{1, 2}}});
  const TokenDataset data = TokenDataset::open({dir / "part_*.idx"});
  REQUIRE(data.shards().size() == 2);
  CHECK(data.num_documents() == 3);
  CHECK(data.document_start(1) == 2);
  std::vector<int32_t> all(5);
  data.read(0, 5, all.data());
  CHECK(all == std::vector<int32_t>{1, 2, 3, 4, 5});
  const TokenDataset same = TokenDataset::open({dir.path().string()});
  CHECK(same.num_tokens() == 5);
}
