// dssm data prepare --input FILES... --tokenizer X.model --out DIR [--format megatron|llmc|flat]
//                   [--exclude-sets "DM Mathematics,Github"] [--shard-tokens N] [--threads N]
// dssm data info PATH... [--json] [--vocab-size V]
// dssm data dump PATH... --doc I [--limit N]
// docs/data.md describes the formats and the conventions.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensor/error.hpp"
#include "tools/cli/commands.hpp"
#include "train/data/prepare.hpp"
#include "train/data/token_dataset.hpp"

namespace dssm::cli {
namespace {

using namespace dssm::data;

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  std::stringstream stream(list);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string clock_time(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02d}", s / 60, s % 60);
}

std::string millions(int64_t n) {
  return n >= 1'000'000 ? fmt::format("{:.1f}M", n / 1e6) : fmt::format("{}", n);
}

// One line, redrawn in place on a terminal; a line every 10 s otherwise (logs).
class ProgressBar {
 public:
  void operator()(const PrepareProgress& p, bool last = false) {
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    if (!last && p.seconds - drawn_at_ < (tty ? 0.25 : 10.0)) return;
    drawn_at_ = p.seconds;
    const double fraction =
        p.total_bytes > 0 ? std::min(1.0, double(p.bytes_read) / double(p.total_bytes)) : 1.0;
    const int width = 24, filled = static_cast<int>(fraction * width);
    const double rate = p.seconds > 0 ? p.bytes_read / p.seconds : 0;
    const double eta = rate > 0 ? (p.total_bytes - p.bytes_read) / rate : 0;
    fmt::print(stderr, "{}[{}{}] {:3.0f}%  docs {}  tokens {}  {:.1f} MB/s  ETA {}{}",
               tty ? "\r" : "", std::string(filled, '#'), std::string(width - filled, '.'),
               100 * fraction, p.documents, millions(p.tokens), rate / 1e6, clock_time(eta),
               tty && !last ? "   " : "\n");
  }

 private:
  double drawn_at_ = -1e9;
};

void print_summary(const PrepareSummary& s, const std::string& out_dir) {
  fmt::print("{:<24} {:>10} {:>10} {:>14}\n", "pile_set_name", "kept", "dropped", "tokens");
  for (const auto& [name, c] : s.sets) {
    fmt::print("{:<24} {:>10} {:>10} {:>14}\n", name.empty() ? "(none)" : name, c.kept, c.dropped,
               c.tokens);
  }
  fmt::print("kept {} documents, {} tokens, in {} shard(s) under {}\n", s.documents, s.tokens,
             s.shards.size(), out_dir);
  fmt::print(
      "skipped {} lines of invalid UTF-8 and {} malformed JSON lines; {:.1f} MB in {:.1f} s "
      "({:.1f} MB/s)\n",
      s.skipped_bad_utf8, s.skipped_bad_json, s.input_bytes / 1e6, s.seconds,
      s.input_bytes / 1e6 / std::max(s.seconds, 1e-9));
}

void add_prepare(CLI::App& data) {
  struct Options {
    PrepareOptions prepare;
    std::string format = "megatron";
    std::string exclude = "DM Mathematics,Github";
    bool quiet = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = data.add_subcommand("prepare",
                                      "Tokenize raw text (.jsonl, .jsonl.zst, .txt) "
                                      "into shards");
  cmd->add_option("--input", o->prepare.inputs, "Files or globs")->required();
  cmd->add_option("--tokenizer", o->prepare.tokenizer_model, "sentencepiece .model")->required();
  cmd->add_option("--out", o->prepare.out_dir, "Output directory")->required();
  cmd->add_option("--format", o->format, "megatron, llmc or flat")->capture_default_str();
  cmd->add_option("--exclude-sets", o->exclude,
                  "Comma-separated meta.pile_set_name values to "
                  "drop (\"\" keeps all)")
      ->capture_default_str();
  cmd->add_option("--shard-tokens", o->prepare.shard_tokens, "Tokens per shard")
      ->capture_default_str();
  cmd->add_option("--name", o->prepare.name, "Shard name prefix")->capture_default_str();
  cmd->add_option("--threads", o->prepare.threads, "Tokenizer threads (0: all cores)");
  cmd->add_flag("--overwrite", o->prepare.overwrite, "Replace earlier shards of the same name");
  cmd->add_flag("--quiet", o->quiet, "No progress bar");
  cmd->callback([o]() {
    o->prepare.format = parse_format(o->format);
    o->prepare.exclude_sets = split_commas(o->exclude);
    ProgressBar bar;
    PrepareProgress last;
    const PrepareSummary summary = prepare_dataset(o->prepare, [&](const PrepareProgress& p) {
      last = p;
      if (!o->quiet) bar(p);
    });
    if (!o->quiet) bar(last, /*last=*/true);
    print_summary(summary, o->prepare.out_dir);
  });
}

void add_info(CLI::App& data) {
  struct Options {
    std::vector<std::string> paths;
    bool json = false;
    int64_t vocab_size = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = data.add_subcommand("info", "Format, dtype, documents and tokens of shards");
  cmd->add_option("path", o->paths, "Shards, Megatron prefixes, directories or globs")->required();
  cmd->add_flag("--json", o->json, "One JSON object: format, dtype, documents, tokens, shards");
  cmd->add_option("--vocab-size", o->vocab_size, "Also check every id is below this");
  cmd->callback([o]() {
    const TokenDataset dataset = TokenDataset::open(o->paths, {.vocab_size = o->vocab_size});
    std::string format, dtype;
    for (const TokenShard& s : dataset.shards()) {
      const std::string f(format_name(s.format)), d(token_type_name(s.dtype));
      format = format.empty() || format == f ? f : "mixed";
      dtype = dtype.empty() || dtype == d ? d : "mixed";
    }
    const nlohmann::json info = {{"format", format},
                                 {"dtype", dtype},
                                 {"documents", dataset.num_documents()},
                                 {"tokens", dataset.num_tokens()},
                                 {"shards", dataset.shards().size()}};
    if (o->json) {
      fmt::print("{}\n", info.dump());
      return;
    }
    fmt::print("format     {}\ndtype      {}\nshards     {}\ndocuments  {}\ntokens     {}\n",
               format, dtype, dataset.shards().size(), dataset.num_documents(),
               dataset.num_tokens());
  });
}

void add_dump(CLI::App& data) {
  struct Options {
    std::vector<std::string> paths;
    int64_t doc = 0;
    int64_t limit = -1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = data.add_subcommand("dump", "Print the token ids of one document");
  cmd->add_option("path", o->paths, "Shards, Megatron prefixes, directories or globs")->required();
  cmd->add_option("--doc", o->doc, "Document index (over all shards, in order)")->required();
  cmd->add_option("--limit", o->limit, "Print at most this many ids");
  cmd->callback([o]() {
    const TokenDataset dataset = TokenDataset::open(o->paths);
    DSSM_CHECK(o->doc >= 0 && o->doc < dataset.num_documents(), "data dump",
               "document {} out of range [0, {})", o->doc, dataset.num_documents());
    std::vector<int32_t> ids = dataset.document(o->doc);
    if (o->limit >= 0 && o->limit < static_cast<int64_t>(ids.size())) ids.resize(o->limit);
    fmt::print("{}\n", fmt::join(ids, " "));
  });
}

}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare, inspect and dump token shards");
  data->require_subcommand(1);
  add_prepare(*data);
  add_info(*data);
  add_dump(*data);
}

}  // namespace dssm::cli
