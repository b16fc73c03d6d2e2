// Megatron-LM / GPT-NeoX "MMIDIDX" indexed datasets: name.bin holds the tokens of every sequence
// back to back; name.idx (little-endian) holds
//   offset 0   char[9]  magic "MMIDIDX\0\0"
//   offset 9   uint64   version (1)
//   offset 17  uint8    dtype code (token_type_from_megatron_code)
//   offset 18  uint64   S, the number of sequences
//   offset 26  uint64   D, the number of document boundaries (documents + 1)
//   offset 34  int32    lengths[S]      tokens per sequence
//              int64    pointers[S]     byte offset of each sequence in .bin
//              int64    doc_index[D]    sequence index where each document starts; last = S
// A document is the run of sequences doc_index[d] .. doc_index[d+1]-1.
#include <cstring>
#include <vector>

#include "tensor/error.hpp"
#include "train/data/formats.hpp"
#include "train/data/shard.hpp"

namespace dssm::data {

TokenShard open_megatron(const std::string& prefix) {
  TokenShard shard;
  shard.format = ShardFormat::megatron;
  shard.index = MappedFile(prefix + ".idx");
  shard.data = MappedFile(prefix + ".bin");
  shard.path = shard.data.path();
  const std::string& idx_path = shard.index.path();
  const std::byte* idx = shard.index.data();
  const int64_t idx_size = shard.index.size();

  DSSM_CHECK(idx_size >= kMegatronHeaderBytes, idx_path,
             "truncated at byte offset {}: expected a header of {} bytes", idx_size,
             kMegatronHeaderBytes);
  DSSM_CHECK(
      std::memcmp(idx, kMegatronMagic, 9) == 0, idx_path,
      "bad magic at byte offset 0: expected 4d 4d 49 44 49 44 58 00 00 (\"MMIDIDX\\0\\0\"), got {}",
      hex_bytes(idx, 9));
  const uint64_t version = load<uint64_t>(idx, 9);
  DSSM_CHECK(version == 1, idx_path, "unknown version {} at byte offset 9, expected 1", version);
  const TokenType dtype =
      token_type_from_megatron_code(load<uint8_t>(idx, 17), idx_path + " (byte offset 17)");
  const uint64_t sequences = load<uint64_t>(idx, 18);
  const uint64_t boundaries = load<uint64_t>(idx, 26);
  const uint64_t room = static_cast<uint64_t>(idx_size - kMegatronHeaderBytes);
  DSSM_CHECK(
      sequences <= room / 12 && boundaries <= room / 8 && 12 * sequences + 8 * boundaries <= room,
      idx_path,
      "truncated: {} sequences and {} document boundaries need {} bytes after the header, the "
      "file has {}",
      sequences, boundaries, 12.0 * sequences + 8.0 * boundaries, room);
  const int64_t S = static_cast<int64_t>(sequences), D = static_cast<int64_t>(boundaries);
  const int64_t lengths_at = kMegatronHeaderBytes, pointers_at = lengths_at + 4 * S;
  const int64_t docs_at = pointers_at + 8 * S;
  const int64_t esize = token_bytes(dtype);

  // Sequences: non-empty, back to back from byte 0, inside the .bin.
  int64_t expected_pointer = 0;
  for (int64_t i = 0; i < S; ++i) {
    const int32_t length = load<int32_t>(idx, lengths_at + 4 * i);
    const int64_t pointer = load<int64_t>(idx, pointers_at + 8 * i);
    DSSM_CHECK(length > 0, idx_path,
               "sequence {} (length at byte offset {}) has length {}, expected > 0", i,
               lengths_at + 4 * i, length);
    DSSM_CHECK(
        pointer == expected_pointer, idx_path,
        "sequence {} (pointer at byte offset {}) starts at .bin byte {}, expected {} (sequences "
        "stored back to back)",
        i, pointers_at + 8 * i, pointer, expected_pointer);
    expected_pointer = pointer + int64_t{length} * esize;
    DSSM_CHECK(
        expected_pointer <= shard.data.size(), shard.path,
        "truncated or pointer past the end: sequence {} ends at byte offset {}, the file has {} "
        "bytes",
        i, expected_pointer, shard.data.size());
  }
  // Document boundaries: 0, strictly increasing (no empty document), ending at S.
  DSSM_CHECK(D >= 1, idx_path, "document index at byte offset {} is empty, expected at least [0]",
             docs_at);
  int64_t previous = -1;
  for (int64_t d = 0; d < D; ++d) {
    const int64_t at = docs_at + 8 * d;
    const int64_t first = load<int64_t>(idx, at);
    if (d == 0) {
      DSSM_CHECK(first == 0, idx_path, "document index at byte offset {} is {}, expected 0", at,
                 first);
    } else {
      DSSM_CHECK(
          first > previous, idx_path,
          "document {} (index at byte offset {}) is empty: starts at sequence {}, expected > {}",
          d - 1, at, first, previous);
    }
    DSSM_CHECK(first <= S, idx_path,
               "document index at byte offset {} points past the end: sequence {}, expected <= {}",
               at, first, S);
    previous = first;
  }
  DSSM_CHECK(previous == S, idx_path,
             "last document index (byte offset {}) is {}, expected {} (the number of sequences)",
             docs_at + 8 * (D - 1), previous, S);

  shard.dtype = dtype;
  shard.num_tokens = expected_pointer / esize;
  shard.num_documents = D - 1;
  shard.tokens = shard.data.data();
  shard.document_start = [idx, pointers_at, docs_at, S, esize,
                          total = shard.num_tokens](int64_t d) {
    const int64_t sequence = load<int64_t>(idx, docs_at + 8 * d);
    return sequence == S ? total : load<int64_t>(idx, pointers_at + 8 * sequence) / esize;
  };
  return shard;
}

namespace {

class MegatronWriter final : public ShardWriter {
 public:
  MegatronWriter(const std::string& prefix, TokenType dtype)
      : dtype_(dtype), bin_(prefix + ".bin"), idx_(prefix + ".idx") {
    megatron_code(dtype);  // throws for uint32, which has no code
  }

  void add_document(std::span<const int32_t> tokens) override {
    DSSM_CHECK(!tokens.empty(), bin_.path(), "document {} is empty", lengths_.size());
    pointers_.push_back(bin_.size());
    lengths_.push_back(static_cast<int32_t>(tokens.size()));
    write_tokens(bin_, dtype_, tokens);
  }

  int64_t num_tokens() const override { return bin_.size() / token_bytes(dtype_); }

  void commit() override {
    const uint64_t sequences = lengths_.size();
    idx_.write(kMegatronMagic, 9);
    idx_.write_value(uint64_t{1});
    idx_.write_value(megatron_code(dtype_));
    idx_.write_value(sequences);
    idx_.write_value(sequences + 1);
    idx_.write(lengths_.data(), lengths_.size() * sizeof(int32_t));
    idx_.write(pointers_.data(), pointers_.size() * sizeof(int64_t));
    for (uint64_t d = 0; d <= sequences; ++d) idx_.write_value(static_cast<int64_t>(d));
    bin_.close();
    idx_.close();
    bin_.rename_into_place();  // the .idx last: a .bin without .idx is not a shard
    idx_.rename_into_place();
  }

 private:
  TokenType dtype_;
  AtomicFile bin_, idx_;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> pointers_;
};

}  // namespace

std::unique_ptr<ShardWriter> make_megatron_writer(const std::string& prefix, TokenType dtype) {
  return std::make_unique<MegatronWriter>(prefix, dtype);
}

}  // namespace dssm::data
