#include "train/data/raw_documents.hpp"

#include <fmt/format.h>
#include <glob.h>

#include <filesystem>

#include "tensor/error.hpp"
#include "train/data/json_document.hpp"
#include "train/data/utf8.hpp"

namespace dssm::data {
namespace fs = std::filesystem;
namespace {

bool is_text_file(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name.ends_with(".txt") || name.ends_with(".txt.zst");
}

RawDocumentReader::Warn first_warnings_to_stderr() {
  return [shown = 0](const std::string& message) mutable {
    if (shown < 20) fmt::print(stderr, "warning: {}\n", message);
    if (++shown == 20) fmt::print(stderr, "warning: (further warnings are only counted)\n");
  };
}

}  // namespace

std::vector<std::string> expand_input_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const std::string& entry : paths) {
    if (entry.find_first_of("*?[") == std::string::npos) {
      DSSM_CHECK(fs::is_regular_file(entry), entry, "no such file");
      files.push_back(entry);
      continue;
    }
    glob_t matches{};
    const int status = ::glob(entry.c_str(), 0, nullptr, &matches);
    for (size_t i = 0; i < matches.gl_pathc; ++i) files.emplace_back(matches.gl_pathv[i]);
    ::globfree(&matches);
    DSSM_CHECK(status == 0, entry, "the pattern matches no file");
  }
  return files;
}

RawDocumentReader::RawDocumentReader(const std::vector<std::string>& files, Warn warn)
    : files_(expand_input_paths(files)),
      warn_(warn ? std::move(warn) : first_warnings_to_stderr()) {
  for (const std::string& f : files_) {
    const std::string name = fs::path(f).filename().string();
    DSSM_CHECK(name.ends_with(".jsonl") || name.ends_with(".jsonl.zst") || is_text_file(f), f,
               "unknown input type: expected .jsonl, .jsonl.zst, .txt or .txt.zst");
    total_bytes_ += static_cast<int64_t>(fs::file_size(f));
  }
}

RawDocumentReader::~RawDocumentReader() = default;

int64_t RawDocumentReader::bytes_read() const {
  return finished_bytes_ + (stream_ ? stream_->file_offset() : 0);
}

void RawDocumentReader::skip(int64_t& counter, const std::string& message) {
  ++counter;
  warn_(message);
}

bool RawDocumentReader::parse_json_line(const std::string& line, int64_t offset,
                                        RawDocument& document) {
  const std::string& path = stream_->path();
  if (line.empty()) return false;  // blank lines (a trailing newline) are not documents
  const int64_t bad = first_invalid_utf8(line);
  if (bad >= 0) {
    skip(counts_.bad_utf8,
         fmt::format("{}: invalid UTF-8 at byte offset {}, line skipped", path, offset + bad));
    return false;
  }
  if (!parse_json_document(line, document.text, document.set_name)) {
    skip(counts_.bad_json,
         fmt::format("{}: line at byte offset {} is not a JSON object with a string \"text\", "
                     "skipped",
                     path, offset));
    return false;
  }
  if (document.text.empty()) return false;  // nothing to learn from
  return true;
}

bool RawDocumentReader::next(RawDocument& document) {
  while (true) {
    if (!stream_) {
      if (next_file_ == files_.size()) return false;
      stream_ = std::make_unique<ByteStream>(files_[next_file_++]);
    }
    const std::string path = stream_->path();
    if (is_text_file(path)) {
      // The whole file is one document.
      document.text.clear();
      document.set_name.clear();
      int64_t offset = 0;
      bool first = true;
      while (stream_->next_line(line_, offset)) {
        if (!first) document.text += '\n';
        document.text += line_;
        first = false;
      }
      finished_bytes_ += static_cast<int64_t>(fs::file_size(path));
      stream_.reset();
      const int64_t bad = first_invalid_utf8(document.text);
      if (bad >= 0) {
        skip(counts_.bad_utf8,
             fmt::format("{}: invalid UTF-8 at byte offset {}, file skipped", path, bad));
        continue;
      }
      if (document.text.empty()) continue;
      ++counts_.documents;
      return true;
    }
    int64_t offset = 0;
    while (stream_->next_line(line_, offset)) {
      if (parse_json_line(line_, offset, document)) {
        ++counts_.documents;
        return true;
      }
    }
    finished_bytes_ += static_cast<int64_t>(fs::file_size(path));
    stream_.reset();
  }
}

}  // namespace dssm::data
