// Reads a file front to back, decompressing it on the fly when its name ends in .zst (zstd
// frames, as the Pile's NN.jsonl.zst), and hands it out line by line. Memory stays constant:
// one input block, one output block, and the current line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace dssm::data {

class ByteStream {
 public:
  explicit ByteStream(const std::string& path);
  ~ByteStream();
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Reads the next line (without its '\n') into `line`; false at the end of the file.
  // `offset` receives the line's byte offset in the (decompressed) content.
  bool next_line(std::string& line, int64_t& offset);
  // Bytes of the file consumed so far (compressed bytes for .zst): for progress.
  int64_t file_offset() const { return file_offset_; }
  const std::string& path() const { return path_; }

 private:
  // Fills buffer_ with the next block of content; false at the end.
  bool refill();

  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t file_offset_ = 0;
  struct Zstd;  // the decompression state, for .zst files
  std::unique_ptr<Zstd> zstd_;
  std::string buffer_;
  size_t position_ = 0;        // next unread byte of buffer_
  int64_t buffer_offset_ = 0;  // content offset of buffer_[0]
};

}  // namespace dssm::data
