// Our writers, read back by our readers: every format and every dtype it can hold. And the bytes
// our Megatron writer produces are exactly those of the documented layout.
#include <catch2/catch.hpp>

#include "tests/test_data_helpers.hpp"
#include "train/data/token_dataset.hpp"

using namespace dssm::data;

namespace {

std::string shard_name(std::string base, ShardFormat format) {
  base += shard_extension(format);
  return base;
}

int32_t largest_id(TokenType type) {
  switch (type) {
    case TokenType::u8:
      return 255;
    case TokenType::i8:
      return 127;
    case TokenType::i16:
      return 32767;
    case TokenType::u16:
      return 65535;
    default:
      return 1 << 20;
  }
}

void round_trip(ShardFormat format, TokenType type) {
  INFO(format_name(format) << " " << token_type_name(type));
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  const int32_t vocab = largest_id(type) + 1;
  const auto documents = dssm::test::random_documents(rng, 20, 50, vocab);
  const std::string path = dir / shard_name("shard", format);
  auto writer = make_shard_writer(format, path, type, /*llmc_separator=*/vocab - 1);
  int64_t tokens = 0;
  for (const auto& d : documents) {
    writer->add_document(d);
    tokens += static_cast<int64_t>(d.size());
  }
  CHECK(writer->num_tokens() == tokens);
  writer->commit();

  const TokenDataset data = TokenDataset::open({path}, {.vocab_size = vocab});
  CHECK(data.shards()[0].format == format);
  CHECK(data.shards()[0].dtype == type);
  CHECK(data.num_tokens() == tokens);
  std::vector<int32_t> stream(static_cast<size_t>(tokens)), expected;
  data.read(0, tokens, stream.data());
  for (const auto& d : documents) expected.insert(expected.end(), d.begin(), d.end());
  CHECK(stream == expected);
  if (format != ShardFormat::llmc) {  // llm.c has no document index: see the next test
    REQUIRE(data.num_documents() == 20);
    for (int64_t d = 0; d < 20; ++d) CHECK(data.document(d) == documents[size_t(d)]);
  }
}

}  // namespace

TEST_CASE("Megatron shards round-trip in every dtype", "[data]") {
  for (TokenType type : {TokenType::u8, TokenType::i8, TokenType::i16, TokenType::i32,
                         TokenType::i64, TokenType::f64, TokenType::f32, TokenType::u16}) {
    round_trip(ShardFormat::megatron, type);
  }
}

TEST_CASE("llm.c and flat shards round-trip in uint16 and uint32", "[data]") {
  for (TokenType type : {TokenType::u16, TokenType::u32}) {
    round_trip(ShardFormat::llmc, type);
    round_trip(ShardFormat::flat, type);
  }
}

TEST_CASE("llm.c documents are found at the separator our writer records", "[data]") {
  dssm::test::ScratchDir dir;
  auto rng = dssm::test::fresh_rng();
  const int32_t separator = 2;
  auto documents = dssm::test::random_documents(rng, 15, 30, 1000);
  auto writer = make_shard_writer(ShardFormat::llmc, dir / "s.bin", TokenType::u16, separator);
  for (auto& d : documents) {
    for (auto& t : d) t = t == separator ? 7 : t;
    d.insert(d.begin(), separator);
    writer->add_document(d);
  }
  writer->commit();
  const TokenDataset data = TokenDataset::open({dir / "s.bin"});
  REQUIRE(data.num_documents() == 15);
  for (int64_t d = 0; d < 15; ++d) CHECK(data.document(d) == documents[size_t(d)]);
  // The recorded id sits in header word 3; llm.c's own words 0-2 are magic, version, count.
  const auto bytes = dssm::test::read_file(dir / "s.bin");
  int32_t header[4];
  std::memcpy(header, bytes.data(), sizeof(header));
  CHECK(header[0] == 20240520);
  CHECK(header[1] == 1);
  CHECK(header[2] == data.num_tokens());
  CHECK(header[3] == separator);
}

TEST_CASE("The Megatron writer produces the documented bytes", "[data]") {
  dssm::test::ScratchDir dir;
  auto writer = make_shard_writer(ShardFormat::megatron, dir / "m", TokenType::u16);
  writer->add_document(std::vector<int32_t>{10, 11, 12});
  writer->add_document(std::vector<int32_t>{65535});
  writer->commit();
  dssm::test::Bytes idx, bin;
  idx.put_raw("MMIDIDX\0\0", 9).put<uint64_t>(1).put<uint8_t>(8).put<uint64_t>(2).put<uint64_t>(3);
  idx.put<int32_t>(3).put<int32_t>(1).put<int64_t>(0).put<int64_t>(6);
  idx.put<int64_t>(0).put<int64_t>(1).put<int64_t>(2);
  bin.put<uint16_t>(10).put<uint16_t>(11).put<uint16_t>(12).put<uint16_t>(65535);
  CHECK(dssm::test::read_file(dir / "m.idx") == idx.data);
  CHECK(dssm::test::read_file(dir / "m.bin") == bin.data);
}

TEST_CASE("A writer destroyed without commit leaves nothing behind", "[data]") {
  dssm::test::ScratchDir dir;
  for (ShardFormat format : {ShardFormat::megatron, ShardFormat::llmc, ShardFormat::flat}) {
    auto writer = make_shard_writer(format, dir / shard_name("x", format), TokenType::u16, 2);
    writer->add_document(std::vector<int32_t>{1, 2, 3});
    CHECK(std::filesystem::directory_iterator(dir.path()) != std::filesystem::directory_iterator());
    writer.reset();
    CHECK(std::filesystem::directory_iterator(dir.path()) == std::filesystem::directory_iterator());
  }
  // A token that does not fit the dtype is refused, with the file named.
  auto writer = make_shard_writer(ShardFormat::flat, dir / "y.tok", TokenType::u16);
  CHECK_THROWS_WITH(writer->add_document(std::vector<int32_t>{70000}),
                    Catch::Contains("y.tok") && Catch::Contains("70000"));
}
