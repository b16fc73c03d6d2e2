// Bad shards give a dssm::Error naming the file, the byte offset, what was expected and what came.
#include <catch2/catch.hpp>

#include "tensor/error.hpp"
#include "tests/test_data_helpers.hpp"
#include "train/data/token_dataset.hpp"

using namespace dssm::data;
using Catch::Contains;
using dssm::test::Bytes;

namespace {

// A valid Megatron pair: documents {1,2,3} and {4,5} as uint16; returns the .idx bytes.
Bytes megatron_idx(uint64_t version = 1, uint8_t code = 8) {
  Bytes idx;
  idx.put_raw("MMIDIDX\0\0", 9).put<uint64_t>(version).put<uint8_t>(code);
  idx.put<uint64_t>(2).put<uint64_t>(3);
  idx.put<int32_t>(3).put<int32_t>(2);                  // lengths at byte 34, 38
  idx.put<int64_t>(0).put<int64_t>(6);                  // pointers at byte 42, 50
  idx.put<int64_t>(0).put<int64_t>(1).put<int64_t>(2);  // document index at byte 58
  return idx;
}

Bytes megatron_bin(uint16_t last = 5) {
  Bytes bin;
  for (uint16_t t : {uint16_t{1}, uint16_t{2}, uint16_t{3}, uint16_t{4}, last}) bin.put(t);
  return bin;
}

template <typename T>
void patch(Bytes& bytes, size_t offset, T value) {
  std::memcpy(bytes.data.data() + offset, &value, sizeof(T));
}

std::string open_error(const std::vector<std::string>& paths, int64_t vocab = 0) {
  try {
    TokenDataset::open(paths, {.vocab_size = vocab});
  } catch (const dssm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Megatron: bad magic, version, dtype code", "[data]") {
  dssm::test::ScratchDir dir;
  const std::string prefix = dir / "m";
  megatron_bin().save(prefix + ".bin");

  Bytes idx = megatron_idx();
  idx.data[3] = 'X';
  idx.save(prefix + ".idx");
  const std::string magic = open_error({prefix});
  CHECK_THAT(magic, Contains("m.idx") && Contains("bad magic at byte offset 0") &&
                        Contains("4d 4d 49 58 49 44 58 00 00"));

  megatron_idx(/*version=*/2).save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("m.idx") &&
                                       Contains("unknown version 2 at byte offset 9") &&
                                       Contains("expected 1"));

  megatron_idx(1, /*code=*/9).save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}),
             Contains("m.idx (byte offset 17)") && Contains("unknown dtype code 9"));
}

TEST_CASE("Megatron: truncated .idx and .bin, pointers and sizes past the end", "[data]") {
  dssm::test::ScratchDir dir;
  const std::string prefix = dir / "m";
  megatron_bin().save(prefix + ".bin");

  Bytes idx = megatron_idx();
  idx.data.resize(60);
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("m.idx") && Contains("truncated"));
  idx.data.resize(20);
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}),
             Contains("m.idx") && Contains("truncated at byte offset 20") && Contains("34 bytes"));

  megatron_idx().save(prefix + ".idx");
  Bytes bin = megatron_bin();
  bin.data.resize(8);
  bin.save(prefix + ".bin");
  CHECK_THAT(open_error({prefix}), Contains("m.bin") &&
                                       Contains("sequence 1 ends at byte offset 10") &&
                                       Contains("the file has 8 bytes"));

  megatron_bin().save(prefix + ".bin");
  idx = megatron_idx();
  patch<int64_t>(idx, 50, 4000);  // sequence 1's pointer
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("m.idx") && Contains("byte offset 50") &&
                                       Contains("starts at .bin byte 4000, expected 6"));

  idx = megatron_idx();
  patch<int32_t>(idx, 38, 1000);  // sequence 1's length
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("m.bin") && Contains("pointer past the end"));

  idx = megatron_idx();
  patch<int64_t>(idx, 74, 7);  // the last document boundary points past the sequences
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("byte offset 74") && Contains("past the end"));
}

TEST_CASE("Megatron: documents of length 0", "[data]") {
  dssm::test::ScratchDir dir;
  const std::string prefix = dir / "m";
  megatron_bin().save(prefix + ".bin");
  Bytes idx = megatron_idx();
  patch<int32_t>(idx, 34, 0);
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("sequence 0 (length at byte offset 34) has length 0"));

  idx = megatron_idx();
  patch<int64_t>(idx, 66, 0);  // document 0 = sequences [0, 0)
  idx.save(prefix + ".idx");
  CHECK_THAT(open_error({prefix}), Contains("document 0 (index at byte offset 66) is empty"));
}

TEST_CASE("Token ids at or beyond the vocabulary: the first offending offset", "[data]") {
  dssm::test::ScratchDir dir;
  megatron_idx().save(dir / "m.idx");
  megatron_bin(/*last=*/40000).save(dir / "m.bin");
  CHECK(open_error({dir / "m"}, 40001) == "(no error)");
  CHECK_THAT(open_error({dir / "m"}, 32000),
             Contains("m.bin") && Contains("token 4 at byte offset 8 has id 40000") &&
                 Contains("[0, 32000)"));

  Bytes llmc;
  llmc.put<int32_t>(20240520).put<int32_t>(1).put<int32_t>(3);
  for (int i = 3; i < 256; ++i) llmc.put<int32_t>(0);
  llmc.put<uint16_t>(50256).put<uint16_t>(50257).put<uint16_t>(60000);
  llmc.save(dir / "l.bin");
  CHECK_THAT(open_error({dir / "l.bin"}, 50257),
             Contains("l.bin") && Contains("token 1 at byte offset 1026 has id 50257"));
}

TEST_CASE("llm.c: bad magic, unknown version, truncated tokens", "[data]") {
  dssm::test::ScratchDir dir;
  const auto shard = [&](int32_t magic, int32_t version, int32_t count, int tokens) {
    Bytes b;
    b.put(magic).put(version).put(count);
    for (int i = 3; i < 256; ++i) b.put<int32_t>(0);
    for (int i = 0; i < tokens; ++i) b.put<uint16_t>(7);
    b.save(dir / "l.bin");
  };
  shard(20240520, 3, 4, 4);
  CHECK_THAT(open_error({dir / "l.bin"}),
             Contains("l.bin") && Contains("unknown version 3 at byte offset 4"));
  shard(20240520, 1, 10, 4);
  CHECK_THAT(open_error({dir / "l.bin"}), Contains("truncated") && Contains("10 tokens") &&
                                              Contains("end at byte offset 1044") &&
                                              Contains("the file has 1032 bytes"));
  shard(20240521, 1, 4, 4);  // not llm.c's magic, nor anything else we know
  CHECK_THAT(open_error({dir / "l.bin"}),
             Contains("l.bin") && Contains("unknown format at byte offset 0"));
  Bytes stub;
  stub.put<int32_t>(20240520).put<int32_t>(1);
  stub.save(dir / "l.bin");
  CHECK_THAT(open_error({dir / "l.bin"}), Contains("truncated at byte offset 8"));
}

TEST_CASE("Flat token files: bad magic, version, width, truncation, empty documents", "[data]") {
  dssm::test::ScratchDir dir;
  const auto flat = [&](uint32_t version, uint32_t width, uint64_t tokens,
                        std::vector<uint64_t> offsets) {
    Bytes b;
    b.put_raw("DSSMTOK\0", 8).put(version).put(width).put(tokens).put<uint64_t>(offsets.size() - 1);
    for (uint64_t i = 0; i < tokens; ++i) b.put<uint16_t>(9);
    while (b.data.size() % 8 != 0) b.put<uint8_t>(0);
    for (uint64_t o : offsets) b.put(o);
    return b;
  };
  flat(2, 2, 4, {0, 4}).save(dir / "f.tok");
  CHECK_THAT(open_error({dir / "f.tok"}), Contains("unknown version 2 at byte offset 8"));
  flat(1, 3, 4, {0, 4}).save(dir / "f.tok");
  CHECK_THAT(open_error({dir / "f.tok"}), Contains("unknown token width 3 at byte offset 12"));
  flat(1, 2, 4, {0, 2, 2, 4}).save(dir / "f.tok");
  CHECK_THAT(open_error({dir / "f.tok"}),
             Contains("document 1 (offset at byte offset 56) is empty"));
  Bytes cut = flat(1, 2, 4, {0, 4});
  cut.data.resize(cut.data.size() - 4);
  cut.save(dir / "f.tok");
  CHECK_THAT(open_error({dir / "f.tok"}), Contains("f.tok") && Contains("truncated"));
  Bytes bad = flat(1, 2, 4, {0, 4});
  bad.data[0] = 'X';
  bad.save(dir / "f.bin");
  CHECK_THAT(open_error({dir / "f.bin"}), Contains("unknown format at byte offset 0"));
  CHECK_THAT(open_error({dir / "nothing_*.idx"}), Contains("no shard found"));
}
