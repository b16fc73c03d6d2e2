// Raw text in, one document at a time out — the input side of `dssm data prepare` and
// `dssm tokenizer train`. Formats, by file name:
//   .jsonl, .jsonl.zst  one JSON object per line, {"text": "...", "meta": {"pile_set_name": "..."}}
//                       (the Pile's NN.jsonl.zst); "meta" is optional
//   .txt, .txt.zst      the whole file is one document
// A line that is not valid UTF-8, or not a JSON object with a string "text", is skipped and
// counted, and `warn` is told the file and byte offset. A corrupt or truncated zstd frame is an
// error (dssm::Error naming the file and the compressed byte offset). Empty texts are passed over.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/data/byte_stream.hpp"

namespace dssm::data {

struct RawDocument {
  std::string text;
  std::string set_name;  // meta.pile_set_name, "" when absent
};

struct RawInputCounts {
  int64_t documents = 0;
  int64_t bad_utf8 = 0;  // lines (or .txt files) skipped for invalid UTF-8
  int64_t bad_json = 0;  // lines skipped for not parsing as {"text": string, ...}
};

class RawDocumentReader {
 public:
  using Warn = std::function<void(const std::string& message)>;
  // `files` may hold globs. The default `warn` prints the first 20 warnings to stderr.
  explicit RawDocumentReader(const std::vector<std::string>& files, Warn warn = {});
  ~RawDocumentReader();

  bool next(RawDocument& document);  // false after the last document of the last file

  const RawInputCounts& counts() const { return counts_; }
  const std::vector<std::string>& files() const { return files_; }
  int64_t total_bytes() const { return total_bytes_; }  // sizes of the files on disk
  int64_t bytes_read() const;                           // of those, consumed so far

 private:
  bool parse_json_line(const std::string& line, int64_t offset, RawDocument& document);
  void skip(int64_t& counter, const std::string& message);

  std::vector<std::string> files_;
  Warn warn_;
  size_t next_file_ = 0;
  std::unique_ptr<ByteStream> stream_;
  int64_t finished_bytes_ = 0;  // sizes of the files already read to the end
  int64_t total_bytes_ = 0;
  RawInputCounts counts_;
  std::string line_;
};

// Expands globs; throws for an entry that matches no file.
std::vector<std::string> expand_input_paths(const std::vector<std::string>& paths);

}  // namespace dssm::data
