#include "train/data/prepare.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>

#include "tensor/error.hpp"
#include "train/data/atomic_file.hpp"
#include "train/data/raw_documents.hpp"
#include "train/data/tokenizer.hpp"

namespace dssm::data {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kRoundBytesPerThread = int64_t{8} << 20;
constexpr size_t kRoundDocumentsPerThread = 4096;

// Removes leftovers of an interrupted run (*.tmp) and, with `overwrite`, earlier shards of the
// same name; refuses to mix new shards with old ones otherwise.
void clear_output_dir(const PrepareOptions& o) {
  fs::create_directories(o.out_dir);
  const std::string prefix = o.name + "_";
  for (const auto& item : fs::directory_iterator(o.out_dir)) {
    const std::string file = item.path().filename().string();
    const bool ours =
        file.starts_with(prefix) || file == "summary.json" || file == "summary.json.tmp";
    if (!ours) continue;
    if (file.ends_with(".tmp") || o.overwrite) {
      fs::remove(item.path());
    } else {
      fail(o.out_dir, "already holds {} (a previous preparation): pass --overwrite to replace it",
           file);
    }
  }
}

class ShardSequence {
 public:
  ShardSequence(const PrepareOptions& o, TokenType dtype, int32_t separator)
      : options_(o), dtype_(dtype), separator_(separator) {}

  void add(std::span<const int32_t> document) {
    if (!writer_) {
      const std::string path =
          (fs::path(options_.out_dir) / fmt::format("{}_{:06d}", options_.name, shards_.size()))
              .string() +
          std::string(shard_extension(options_.format));
      writer_ = make_shard_writer(options_.format, path, dtype_, separator_);
      shards_.push_back(options_.format == ShardFormat::megatron ? path + ".idx" : path);
    }
    writer_->add_document(document);
    if (writer_->num_tokens() >= options_.shard_tokens) finish();
  }

  void finish() {
    if (writer_) writer_->commit();
    writer_.reset();
  }

  const std::vector<std::string>& shards() const { return shards_; }

 private:
  const PrepareOptions& options_;
  TokenType dtype_;
  int32_t separator_;
  std::unique_ptr<ShardWriter> writer_;
  std::vector<std::string> shards_;
};

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& o,
                               const std::function<void(const PrepareProgress&)>& on_progress) {
  const auto start = std::chrono::steady_clock::now();
  DSSM_CHECK(o.shard_tokens > 0, "data prepare", "shard size {} tokens, expected > 0",
             o.shard_tokens);
  const Tokenizer tokenizer(o.tokenizer_model);
  const int32_t eos = tokenizer.eos_id();
  DSSM_CHECK(eos >= 0, o.tokenizer_model, "the tokenizer has no <eos> piece");
  const bool wide = tokenizer.vocab_size() > 65536;
  const TokenType dtype = !wide                               ? TokenType::u16
                          : o.format == ShardFormat::megatron ? TokenType::i32
                                                              : TokenType::u32;
  RawDocumentReader reader(o.inputs);
  clear_output_dir(o);
  ShardSequence shards(o, dtype, eos);
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();

  PrepareSummary summary;
  std::vector<RawDocument> round;
  std::vector<std::vector<int32_t>> encoded;
  RawDocument document;
  bool more = true;
  while (more) {
    // Read a round of kept documents.
    round.clear();
    int64_t round_bytes = 0;
    while (round_bytes < kRoundBytesPerThread * threads &&
           round.size() < kRoundDocumentsPerThread * threads) {
      if (!(more = reader.next(document))) break;
      SetCounts& set = summary.sets[document.set_name];
      if (std::find(o.exclude_sets.begin(), o.exclude_sets.end(), document.set_name) !=
          o.exclude_sets.end()) {
        ++set.dropped;
        continue;
      }
      ++set.kept;
      round_bytes += static_cast<int64_t>(document.text.size());
      round.push_back(std::move(document));
    }
    // Tokenize it in parallel, adding the separator where the format wants it.
    encoded.assign(round.size(), {});
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t i = 0; i < round.size(); ++i) {
      try {
        std::vector<int32_t> ids = tokenizer.encode(round[i].text);
        if (o.format == ShardFormat::llmc) {
          ids.insert(ids.begin(), eos);
        } else {
          ids.push_back(eos);
        }
        encoded[i] = std::move(ids);
      } catch (...) {
#pragma omp critical
        error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    // Write it in input order.
    for (size_t i = 0; i < round.size(); ++i) {
      shards.add(encoded[i]);
      summary.sets[round[i].set_name].tokens += static_cast<int64_t>(encoded[i].size());
      summary.tokens += static_cast<int64_t>(encoded[i].size());
    }
    summary.documents += static_cast<int64_t>(round.size());
    summary.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_progress) {
      on_progress({.documents = summary.documents,
                   .tokens = summary.tokens,
                   .bytes_read = reader.bytes_read(),
                   .total_bytes = reader.total_bytes(),
                   .seconds = summary.seconds});
    }
  }
  shards.finish();
  summary.shards = shards.shards();
  summary.skipped_bad_utf8 = reader.counts().bad_utf8;
  summary.skipped_bad_json = reader.counts().bad_json;
  summary.input_bytes = reader.total_bytes();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  AtomicFile summary_file((fs::path(o.out_dir) / "summary.json").string());
  const std::string text = to_json(summary).dump(2) + "\n";
  summary_file.write(text.data(), text.size());
  summary_file.commit();
  return summary;
}

nlohmann::json to_json(const PrepareSummary& s) {
  nlohmann::json sets = nlohmann::json::object();
  for (const auto& [name, c] : s.sets) {
    sets[name] = {{"kept", c.kept}, {"dropped", c.dropped}, {"tokens", c.tokens}};
  }
  return {{"documents", s.documents},
          {"tokens", s.tokens},
          {"skipped_bad_utf8", s.skipped_bad_utf8},
          {"skipped_bad_json", s.skipped_bad_json},
          {"input_bytes", s.input_bytes},
          {"seconds", s.seconds},
          {"sets", sets},
          {"shards", s.shards}};
}

}  // namespace dssm::data
