// One memory-mapped file of tokens, whatever its format, seen the same way by the dataset: a
// run of `num_tokens` tokens of one TokenType, cut into `num_documents` documents.
//
// The formats (docs/data.md has the byte layouts):
//   megatron  name.bin + name.idx (MMIDIDX), as written by Megatron-LM / GPT-NeoX (Pythia's Pile)
//   llmc      llm.c shards: 256 int32 header (magic 20240520, version 1 = uint16 / 2 = uint32)
//   flat      our own: "DSSMTOK\0" header, uint16/uint32 tokens, then document offsets
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "train/data/mapped_file.hpp"
#include "train/data/token_type.hpp"

namespace dssm::data {

enum class ShardFormat { megatron, llmc, flat };
std::string_view format_name(ShardFormat format);
ShardFormat parse_format(std::string_view name);  // "megatron", "llmc" or "flat"

struct TokenShard {
  std::string path;  // the file holding the tokens (megatron: the .bin)
  ShardFormat format = ShardFormat::flat;
  TokenType dtype = TokenType::u16;
  int64_t num_tokens = 0;
  int64_t num_documents = 0;
  const std::byte* tokens = nullptr;  // into `data`
  int64_t tokens_offset = 0;          // byte offset of `tokens` in the file, for messages
  // Start of document d in tokens, for d in [0, num_documents]; (num_documents) -> num_tokens.
  std::function<int64_t(int64_t)> document_start;
  MappedFile data, index;  // index: the megatron .idx, else empty

  void read(int64_t first, int64_t count, int32_t* out) const {
    copy_tokens(tokens, dtype, first, count, out);
  }
  // Throws, naming the file and the byte offset of the first token outside [0, vocab_size).
  void check_vocabulary(int64_t vocab_size) const;
};

// Opens a shard, detecting the format: a path ending in .idx, or a .bin / prefix next to an .idx,
// is Megatron; otherwise the first bytes decide (llm.c magic or "DSSMTOK\0").
// `llmc_separator`: the token that starts each llm.c document; -1 takes the id recorded in the
// header by our writer, else the version's default (1: 50256 GPT-2 <|endoftext|>,
// 2: 128000 LLaMA-3 <|begin_of_text|>).
TokenShard open_shard(const std::string& path, int32_t llmc_separator = -1);

TokenShard open_megatron(const std::string& prefix);  // prefix.bin + prefix.idx
TokenShard open_llmc(const std::string& path, int32_t separator = -1);
TokenShard open_flat(const std::string& path);

// Writes one shard, a document at a time, atomically (see AtomicFile): nothing appears under the
// final names until commit(). Documents are written as given; separators are the caller's.
class ShardWriter {
 public:
  virtual ~ShardWriter() = default;
  virtual void add_document(std::span<const int32_t> tokens) = 0;
  virtual int64_t num_tokens() const = 0;
  virtual void commit() = 0;
};

// `path`: megatron: the prefix (".bin"/".idx" are added); llmc, flat: the file.
// `dtype`: megatron: any but uint32; llmc: uint16 (version 1) or uint32 (version 2);
// flat: uint16 or uint32. `llmc_separator` is recorded in the llm.c header (word 3).
std::unique_ptr<ShardWriter> make_shard_writer(ShardFormat format, const std::string& path,
                                               TokenType dtype, int32_t llmc_separator = 0);

// The file name extension of a shard of this format as make_shard_writer's `path` expects it.
std::string_view shard_extension(ShardFormat format);

}  // namespace dssm::data
