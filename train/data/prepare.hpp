// prepare_dataset: raw text (the Pile's NN.jsonl.zst, other .jsonl, .txt) to token shards — what
// `dssm data prepare` runs. Streaming and constant memory: documents are read in rounds of a few
// MB per thread, tokenized in parallel (OpenMP, one shared Tokenizer), and written in input order.
//
// Each document becomes its tokens plus <eos> where the format expects it: after the document
// for megatron and flat (Megatron's --append-eod), before it for llmc (llm.c's separator; its id
// is recorded in the header). Documents whose meta.pile_set_name is in `exclude_sets` are dropped
// (the paper drops "DM Mathematics" and "Github"). Shards are cut at document boundaries once
// they hold `shard_tokens` tokens, and appear only when complete (AtomicFile). Last, the summary
// is written to out_dir/summary.json: its presence marks a finished preparation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/data/shard.hpp"

namespace dssm::data {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files or globs of .jsonl, .jsonl.zst, .txt
  std::string tokenizer_model;      // a sentencepiece .model
  std::string out_dir;
  ShardFormat format = ShardFormat::megatron;
  std::vector<std::string> exclude_sets = {"DM Mathematics", "Github"};
  int64_t shard_tokens = 100'000'000;
  std::string name = "shard";  // shards are out_dir/name_000000[.bin/.idx | .bin | .tok]
  int threads = 0;             // 0: all cores
  bool overwrite = false;      // replace shards of the same name in out_dir
};

struct PrepareProgress {
  int64_t documents = 0;  // kept so far
  int64_t tokens = 0;
  int64_t bytes_read = 0;  // of the input files (compressed bytes for .zst)
  int64_t total_bytes = 0;
  double seconds = 0;
};

struct SetCounts {
  int64_t kept = 0;
  int64_t dropped = 0;
  int64_t tokens = 0;  // of the kept documents, separators included
};

struct PrepareSummary {
  std::map<std::string, SetCounts> sets;  // by meta.pile_set_name ("" when absent)
  int64_t documents = 0, tokens = 0;      // kept
  int64_t skipped_bad_utf8 = 0, skipped_bad_json = 0;
  int64_t input_bytes = 0;
  double seconds = 0;
  std::vector<std::string> shards;  // paths as open_shard takes them
};

PrepareSummary prepare_dataset(const PrepareOptions& options,
                               const std::function<void(const PrepareProgress&)>& on_progress = {});

nlohmann::json to_json(const PrepareSummary& summary);

}  // namespace dssm::data
