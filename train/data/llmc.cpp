// llm.c token shards (karpathy/llm.c, dev/data/data_common.py): a header of 256 little-endian
// int32 — [0] magic 20240520, [1] version (1: uint16 tokens, 2: uint32 tokens), [2] number of
// tokens, [3..255] zero — then the tokens. llm.c puts a separator token before every document
// (GPT-2's <|endoftext|> = 50256 in version 1, LLaMA-3's <|begin_of_text|> = 128000 in
// version 2). Our writer records its separator in word [3], which llm.c leaves at 0 and ignores.
#include <limits>
#include <memory>
#include <vector>

#include "tensor/error.hpp"
#include "train/data/formats.hpp"
#include "train/data/shard.hpp"

namespace dssm::data {

TokenShard open_llmc(const std::string& path, int32_t separator) {
  TokenShard shard;
  shard.format = ShardFormat::llmc;
  shard.data = MappedFile(path);
  shard.path = path;
  const std::byte* bytes = shard.data.data();
  const int64_t size = shard.data.size();
  DSSM_CHECK(size >= kLlmcHeaderBytes, path,
             "truncated at byte offset {}: expected a header of {} bytes", size, kLlmcHeaderBytes);
  const int32_t magic = load<int32_t>(bytes, 0);
  DSSM_CHECK(magic == kLlmcMagic, path, "bad magic at byte offset 0: expected {}, got {}",
             kLlmcMagic, magic);
  const int32_t version = load<int32_t>(bytes, 4);
  DSSM_CHECK(version == 1 || version == 2, path,
             "unknown version {} at byte offset 4, expected 1 (uint16 tokens) or 2 (uint32 tokens)",
             version);
  const int32_t count = load<int32_t>(bytes, 8);
  DSSM_CHECK(count >= 0, path, "token count {} at byte offset 8, expected >= 0", count);
  shard.dtype = version == 1 ? TokenType::u16 : TokenType::u32;
  const int64_t expected = kLlmcHeaderBytes + int64_t{count} * token_bytes(shard.dtype);
  DSSM_CHECK(
      size >= expected, path,
      "truncated: the header announces {} tokens, which end at byte offset {}, the file has {} "
      "bytes",
      count, expected, size);
  DSSM_CHECK(size == expected, path, "{} bytes after the last of {} tokens (byte offset {})",
             size - expected, count, expected);
  if (separator < 0) separator = load<int32_t>(bytes, 12);
  if (separator <= 0) separator = version == 1 ? 50256 : 128000;

  shard.num_tokens = count;
  shard.tokens = bytes + kLlmcHeaderBytes;
  shard.tokens_offset = kLlmcHeaderBytes;
  // Each separator starts a document; tokens before the first separator form one too.
  auto starts = std::make_shared<std::vector<int64_t>>();
  for (int64_t i = 0; i < count; ++i) {
    if (i == 0 || token_value(shard.tokens, shard.dtype, i) == separator) starts->push_back(i);
  }
  shard.num_documents = static_cast<int64_t>(starts->size());
  starts->push_back(count);
  shard.document_start = [starts](int64_t d) { return (*starts)[static_cast<size_t>(d)]; };
  return shard;
}

namespace {

class LlmcWriter final : public ShardWriter {
 public:
  LlmcWriter(const std::string& path, TokenType dtype, int32_t separator)
      : dtype_(dtype), file_(path) {
    DSSM_CHECK(dtype == TokenType::u16 || dtype == TokenType::u32, path,
               "llm.c shards hold uint16 (version 1) or uint32 (version 2) tokens, not {}",
               token_type_name(dtype));
    std::vector<int32_t> header(256, 0);
    header[0] = kLlmcMagic;
    header[1] = dtype == TokenType::u16 ? 1 : 2;
    header[3] = separator;
    file_.write(header.data(), header.size() * sizeof(int32_t));
  }

  void add_document(std::span<const int32_t> tokens) override {
    write_tokens(file_, dtype_, tokens);
  }

  int64_t num_tokens() const override {
    return (file_.size() - kLlmcHeaderBytes) / token_bytes(dtype_);
  }

  void commit() override {
    DSSM_CHECK(num_tokens() <= std::numeric_limits<int32_t>::max(), file_.path(),
               "{} tokens do not fit the int32 count of an llm.c header", num_tokens());
    const int32_t count = static_cast<int32_t>(num_tokens());
    file_.write_at(8, &count, sizeof(count));
    file_.commit();
  }

 private:
  TokenType dtype_;
  AtomicFile file_;
};

}  // namespace

std::unique_ptr<ShardWriter> make_llmc_writer(const std::string& path, TokenType dtype,
                                              int32_t separator) {
  return std::make_unique<LlmcWriter>(path, dtype, separator);
}

}  // namespace dssm::data
