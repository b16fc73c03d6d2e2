// `data prepare` end to end on small inputs made here: Pile subsets dropped, bad lines skipped
// and counted, <eos> where each format wants it, shards complete or absent.
#include <catch2/catch.hpp>

#include "tensor/error.hpp"
#include "tests/test_data_helpers.hpp"
#include "train/data/prepare.hpp"
#include "train/data/raw_documents.hpp"
#include "train/data/token_dataset.hpp"

#if DSSM_WITH_ZSTD
#include <zstd.h>
#endif

using namespace dssm::data;
namespace fs = std::filesystem;

#if DSSM_WITH_SENTENCEPIECE && DSSM_WITH_ZSTD

namespace {

// The tiny corpus with three bad lines mixed in, zstd-compressed as the Pile's NN.jsonl.zst
// (with a content checksum, as the zstd command line writes by default).
std::string make_pile_shard(const dssm::test::ScratchDir& dir) {
  const std::vector<char> jsonl = dssm::test::read_file(dssm::test::tiny_corpus());
  std::string text(jsonl.begin(), jsonl.end());
  const size_t second_line = text.find('\n') + 1;
  text.insert(second_line,
              "{\"text\": \"broken\n"                     // unterminated string
              "{\"meta\": {\"pile_set_name\": \"X\"}}\n"  // no text
              "{\"text\": \"bad \xff byte\"}\n");         // invalid UTF-8
  std::vector<char> compressed(ZSTD_compressBound(text.size()));
  ZSTD_CCtx* context = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
  const size_t n =
      ZSTD_compress2(context, compressed.data(), compressed.size(), text.data(), text.size());
  ZSTD_freeCCtx(context);
  REQUIRE_FALSE(ZSTD_isError(n));
  dssm::test::Bytes file;
  file.put_raw(compressed.data(), n);
  file.save(dir / "00.jsonl.zst");
  return dir / "00.jsonl.zst";
}

std::vector<RawDocument> corpus_documents() {
  RawDocumentReader reader({dssm::test::tiny_corpus()});
  std::vector<RawDocument> documents;
  for (RawDocument d; reader.next(d);) documents.push_back(d);
  return documents;
}

bool has_temporary_files(const std::string& dir) {
  for (const auto& item : fs::directory_iterator(dir)) {
    if (item.path().extension() == ".tmp") return true;
  }
  return false;
}

}  // namespace

TEST_CASE("Preparing a Pile .jsonl.zst drops DM Mathematics and Github, skips bad lines",
          "[data]") {
  dssm::test::ScratchDir dir;
  const std::string input = make_pile_shard(dir);
  const Tokenizer tokenizer(dssm::test::tiny_tokenizer());
  for (const ShardFormat format : {ShardFormat::megatron, ShardFormat::llmc}) {
    const std::string out = dir / std::string(format_name(format));
    const PrepareSummary summary = prepare_dataset({.inputs = {dir / "*.jsonl.zst"},
                                                    .tokenizer_model = tokenizer.path(),
                                                    .out_dir = out,
                                                    .format = format,
                                                    .shard_tokens = 500,
                                                    .threads = 2});
    CHECK(summary.sets.at("Github").dropped == 1);
    CHECK(summary.sets.at("DM Mathematics").dropped == 1);
    CHECK(summary.sets.at("Pile-CC").kept == 3);
    CHECK(summary.documents == 10);
    CHECK(summary.skipped_bad_json == 2);
    CHECK(summary.skipped_bad_utf8 == 1);
    CHECK(summary.shards.size() > 1);
    CHECK(fs::exists(out + "/summary.json"));
    CHECK_FALSE(has_temporary_files(out));

    // The shards hold each kept document's tokens, in order, with <eos> where the format wants.
    const TokenDataset data = TokenDataset::open({out}, {.vocab_size = tokenizer.vocab_size()});
    REQUIRE(data.num_documents() == 10);
    CHECK(data.num_tokens() == summary.tokens);
    int64_t d = 0;
    for (const RawDocument& document : corpus_documents()) {
      if (document.set_name == "Github" || document.set_name == "DM Mathematics") continue;
      std::vector<int32_t> expected = tokenizer.encode(document.text);
      if (format == ShardFormat::llmc) {
        expected.insert(expected.begin(), tokenizer.eos_id());
      } else {
        expected.push_back(tokenizer.eos_id());
      }
      CHECK(data.document(d++) == expected);
    }
  }
  // --exclude-sets "" keeps everything; a second run into the same folder needs --overwrite.
  const PrepareOptions all{.inputs = {input},
                           .tokenizer_model = tokenizer.path(),
                           .out_dir = dir / "all",
                           .exclude_sets = {}};
  CHECK(prepare_dataset(all).documents == 12);
  CHECK_THROWS_WITH(prepare_dataset(all), Catch::Contains("--overwrite"));
  PrepareOptions again = all;
  again.overwrite = true;
  CHECK(prepare_dataset(again).documents == 12);
}

TEST_CASE("A corrupt or truncated zstd frame is an error and leaves no shard", "[data]") {
  dssm::test::ScratchDir dir;
  const std::string input = make_pile_shard(dir);
  std::vector<char> bytes = dssm::test::read_file(input);
  PrepareOptions options{.inputs = {dir / "bad.jsonl.zst"},
                         .tokenizer_model = dssm::test::tiny_tokenizer(),
                         .out_dir = dir / "out",
                         .shard_tokens = 100};

  std::vector<char> corrupt = bytes;
  for (size_t i = corrupt.size() / 2; i < corrupt.size() / 2 + 16; ++i) corrupt[i] ^= 0x5a;
  dssm::test::Bytes{corrupt}.save(dir / "bad.jsonl.zst");
  CHECK_THROWS_WITH(prepare_dataset(options), Catch::Contains("bad.jsonl.zst") &&
                                                  Catch::Contains("zstd") &&
                                                  Catch::Contains("byte offset"));
  CHECK(fs::is_empty(dir / "out"));

  options.out_dir = dir / "out2";
  std::vector<char> truncated(bytes.begin(), bytes.begin() + bytes.size() / 2);
  dssm::test::Bytes{truncated}.save(dir / "bad.jsonl.zst");
  CHECK_THROWS_WITH(prepare_dataset(options),
                    Catch::Contains("bad.jsonl.zst") && Catch::Contains("truncated zstd frame"));
  CHECK(fs::is_empty(dir / "out2"));
}

TEST_CASE("A .txt file is one document; invalid UTF-8 in it skips the file", "[data]") {
  dssm::test::ScratchDir dir;
  dssm::test::Bytes good, bad;
  const std::string text = "First line of a plain text book.\nSecond line.\n\nA new paragraph.";
  good.put_raw(text.data(), text.size());
  good.save(dir / "a.txt");
  bad.put_raw("caf\xc3", 4);
  bad.save(dir / "b.txt");
  const Tokenizer tokenizer(dssm::test::tiny_tokenizer());
  const PrepareSummary summary = prepare_dataset({.inputs = {dir / "*.txt"},
                                                  .tokenizer_model = tokenizer.path(),
                                                  .out_dir = dir / "out",
                                                  .format = ShardFormat::flat});
  CHECK(summary.documents == 1);
  CHECK(summary.skipped_bad_utf8 == 1);
  const TokenDataset data = TokenDataset::open({dir / "out"});
  std::vector<int32_t> expected = tokenizer.encode(text);
  expected.push_back(tokenizer.eos_id());
  CHECK(data.document(0) == expected);
}

#endif
