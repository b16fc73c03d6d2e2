// TokenDataset: shards opened once (memory-mapped, zero-copy) and seen as one stream of tokens
// cut into documents, in the order the paths were given (globs expand sorted).
//
//   auto data = TokenDataset::open({"data/pile/*.idx"}, {.vocab_size = 32000});
//   data.num_documents(); data.num_tokens();
//   data.read(first, count, out);            // int32 ids of tokens [first, first + count)
//
// With `vocab_size` set, every token of every shard is checked once at open; the first id outside
// the vocabulary is reported with its file and byte offset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/data/shard.hpp"

namespace dssm::data {

struct DatasetOptions {
  int64_t vocab_size = 0;       // > 0: check every token id at open
  int32_t llmc_separator = -1;  // see open_shard
};

class TokenDataset {
 public:
  // Each entry is a shard path, a Megatron prefix, a directory (all its shards) or a glob.
  static TokenDataset open(const std::vector<std::string>& paths,
                           const DatasetOptions& options = {});

  int64_t num_tokens() const { return shard_first_token_.back(); }
  int64_t num_documents() const { return shard_first_document_.back(); }
  const std::vector<TokenShard>& shards() const { return shards_; }

  // Global token index where document `d` starts; d == num_documents() gives num_tokens().
  int64_t document_start(int64_t d) const;
  int64_t document_length(int64_t d) const { return document_start(d + 1) - document_start(d); }
  std::vector<int32_t> document(int64_t d) const;

  // Copies tokens [first, first + count) of the whole stream, across shard boundaries.
  void read(int64_t first, int64_t count, int32_t* out) const;

 private:
  std::vector<TokenShard> shards_;
  std::vector<int64_t> shard_first_token_{0};  // prefix sums, one more entry than shards
  std::vector<int64_t> shard_first_document_{0};
};

// Expands files, directories and globs into shard paths (Megatron pairs once, by their .idx),
// sorted within each entry. Throws for an entry that matches nothing.
std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths);

}  // namespace dssm::data
