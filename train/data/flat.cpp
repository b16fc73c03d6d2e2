// Our flat token file (.tok), little-endian:
//   offset 0   char[8]  magic "DSSMTOK\0"
//   offset 8   uint32   version (1)
//   offset 12  uint32   bytes per token: 2 (uint16) or 4 (uint32)
//   offset 16  uint64   N, the number of tokens
//   offset 24  uint64   D, the number of documents
//   offset 32  tokens[N]
//              zero padding to a multiple of 8 bytes
//              uint64   document_offsets[D + 1]   token index where each document starts; the
//                                                 first is 0, the last is N
#include <cstring>
#include <memory>
#include <vector>

#include "tensor/error.hpp"
#include "train/data/formats.hpp"
#include "train/data/shard.hpp"

namespace dssm::data {
namespace {

int64_t round_up_to_8(int64_t n) {
  return (n + 7) / 8 * 8;
}

}  // namespace

TokenShard open_flat(const std::string& path) {
  TokenShard shard;
  shard.format = ShardFormat::flat;
  shard.data = MappedFile(path);
  shard.path = path;
  const std::byte* bytes = shard.data.data();
  const int64_t size = shard.data.size();
  DSSM_CHECK(size >= kFlatHeaderBytes, path,
             "truncated at byte offset {}: expected a header of {} bytes", size, kFlatHeaderBytes);
  DSSM_CHECK(
      std::memcmp(bytes, kFlatMagic, 8) == 0, path,
      "bad magic at byte offset 0: expected 44 53 53 4d 54 4f 4b 00 (\"DSSMTOK\\0\"), got {}",
      hex_bytes(bytes, 8));
  const uint32_t version = load<uint32_t>(bytes, 8);
  DSSM_CHECK(version == 1, path, "unknown version {} at byte offset 8, expected 1", version);
  const uint32_t width = load<uint32_t>(bytes, 12);
  DSSM_CHECK(width == 2 || width == 4, path,
             "unknown token width {} at byte offset 12, expected 2 (uint16) or 4 (uint32)", width);
  const uint64_t tokens = load<uint64_t>(bytes, 16), documents = load<uint64_t>(bytes, 24);
  const uint64_t room = static_cast<uint64_t>(size - kFlatHeaderBytes);
  DSSM_CHECK(tokens <= room / width && documents < room / 8, path,
             "truncated: the header announces {} tokens and {} documents, the file has {} bytes",
             tokens, documents, size);
  const int64_t N = static_cast<int64_t>(tokens), D = static_cast<int64_t>(documents);
  const int64_t offsets_at = round_up_to_8(kFlatHeaderBytes + N * width);
  DSSM_CHECK(offsets_at + 8 * (D + 1) <= size, path,
             "truncated: the document offsets end at byte offset {}, the file has {} bytes",
             offsets_at + 8 * (D + 1), size);
  for (int64_t d = 0; d <= D; ++d) {
    const int64_t at = offsets_at + 8 * d;
    const int64_t start = load<int64_t>(bytes, at);
    if (d == 0) {
      DSSM_CHECK(start == 0, path, "document offset at byte offset {} is {}, expected 0", at,
                 start);
    } else {
      const int64_t previous = load<int64_t>(bytes, at - 8);
      DSSM_CHECK(start > previous, path,
                 "document {} (offset at byte offset {}) is empty or reversed: ends at token {}, "
                 "starts at {}",
                 d - 1, at, start, previous);
    }
    if (d == D) {
      DSSM_CHECK(start == N, path, "last document offset (byte offset {}) is {}, expected {}", at,
                 start, N);
    }
  }
  shard.dtype = width == 2 ? TokenType::u16 : TokenType::u32;
  shard.num_tokens = N;
  shard.num_documents = D;
  shard.tokens = bytes + kFlatHeaderBytes;
  shard.tokens_offset = kFlatHeaderBytes;
  shard.document_start = [bytes, offsets_at](int64_t d) {
    return load<int64_t>(bytes, offsets_at + 8 * d);
  };
  return shard;
}

namespace {

class FlatWriter final : public ShardWriter {
 public:
  FlatWriter(const std::string& path, TokenType dtype) : dtype_(dtype), file_(path) {
    DSSM_CHECK(dtype == TokenType::u16 || dtype == TokenType::u32, path,
               "flat token files hold uint16 or uint32 tokens, not {}", token_type_name(dtype));
    const char zeros[kFlatHeaderBytes] = {};
    file_.write(zeros, sizeof(zeros));  // the header, written at commit
  }

  void add_document(std::span<const int32_t> tokens) override {
    DSSM_CHECK(!tokens.empty(), file_.path(), "document {} is empty", offsets_.size());
    offsets_.push_back(num_tokens());
    write_tokens(file_, dtype_, tokens);
  }

  int64_t num_tokens() const override {
    return (file_.size() - kFlatHeaderBytes) / token_bytes(dtype_);
  }

  void commit() override {
    const uint64_t tokens = static_cast<uint64_t>(num_tokens());
    const uint64_t documents = offsets_.size();
    offsets_.push_back(num_tokens());
    const char padding[8] = {};
    file_.write(padding, static_cast<size_t>(round_up_to_8(file_.size()) - file_.size()));
    file_.write(offsets_.data(), offsets_.size() * sizeof(int64_t));
    const uint32_t version = 1, width = static_cast<uint32_t>(token_bytes(dtype_));
    file_.write_at(0, kFlatMagic, 8);
    file_.write_at(8, &version, 4);
    file_.write_at(12, &width, 4);
    file_.write_at(16, &tokens, 8);
    file_.write_at(24, &documents, 8);
    file_.commit();
  }

 private:
  TokenType dtype_;
  AtomicFile file_;
  std::vector<int64_t> offsets_;
};

}  // namespace

std::unique_ptr<ShardWriter> make_flat_writer(const std::string& path, TokenType dtype) {
  return std::make_unique<FlatWriter>(path, dtype);
}

}  // namespace dssm::data
