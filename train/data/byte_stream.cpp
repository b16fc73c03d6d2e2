#include "train/data/byte_stream.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include "tensor/error.hpp"

#if DSSM_WITH_ZSTD
#include <zstd.h>
#endif

namespace dssm::data {
namespace {

constexpr size_t kBlockBytes = size_t{1} << 17;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

#if DSSM_WITH_ZSTD
struct ByteStream::Zstd {
  ZSTD_DStream* stream = ZSTD_createDStream();
  std::vector<char> input = std::vector<char>(ZSTD_DStreamInSize());
  ZSTD_inBuffer in{input.data(), 0, 0};
  size_t last_result = 0;  // 0 once a frame is complete
  bool end_of_file = false;
  ~Zstd() { ZSTD_freeDStream(stream); }
};
#else
struct ByteStream::Zstd {};
#endif

ByteStream::ByteStream(const std::string& path) : path_(path) {
  if (ends_with(path, ".zst")) {
#if DSSM_WITH_ZSTD
    zstd_ = std::make_unique<Zstd>();
#else
    fail(path, "built without zstd: install libzstd-dev and re-run cmake to read .zst files");
#endif
  }
  file_ = std::fopen(path.c_str(), "rb");
  DSSM_CHECK(file_ != nullptr, path, "cannot open: {}", std::strerror(errno));
}

ByteStream::~ByteStream() {
  if (file_ != nullptr) std::fclose(file_);
}

bool ByteStream::refill() {
  buffer_offset_ += static_cast<int64_t>(buffer_.size());
  buffer_.resize(kBlockBytes);
  position_ = 0;
  if (!zstd_) {
    const size_t n = std::fread(buffer_.data(), 1, buffer_.size(), file_);
    DSSM_CHECK(n > 0 || !std::ferror(file_), path_, "read error at byte offset {}", file_offset_);
    file_offset_ += static_cast<int64_t>(n);
    buffer_.resize(n);
    return n > 0;
  }
#if DSSM_WITH_ZSTD
  Zstd& z = *zstd_;
  while (true) {
    if (z.in.pos == z.in.size && !z.end_of_file) {
      z.in.size = std::fread(z.input.data(), 1, z.input.size(), file_);
      z.in.pos = 0;
      file_offset_ += static_cast<int64_t>(z.in.size);
      z.end_of_file = z.in.size == 0;
    }
    if (z.in.pos == z.in.size && z.end_of_file) {
      // All input consumed: a clean end only if the last frame was complete and flushed.
      if (z.last_result == 0) {
        buffer_.clear();
        return false;
      }
    }
    ZSTD_outBuffer out{buffer_.data(), buffer_.size(), 0};
    const int64_t consumed_before = file_offset_ - static_cast<int64_t>(z.in.size - z.in.pos);
    const size_t result = ZSTD_decompressStream(z.stream, &out, &z.in);
    DSSM_CHECK(!ZSTD_isError(result), path_,
               "corrupt zstd data near compressed byte offset {} (decompressed byte offset {}): {}",
               consumed_before, buffer_offset_, ZSTD_getErrorName(result));
    z.last_result = result;
    if (out.pos > 0) {
      buffer_.resize(out.pos);
      return true;
    }
    DSSM_CHECK(!(z.end_of_file && z.in.pos == z.in.size), path_,
               "truncated zstd frame: the file ends at compressed byte offset {} inside a frame",
               file_offset_);
  }
#else
  return false;
#endif
}

bool ByteStream::next_line(std::string& line, int64_t& offset) {
  line.clear();
  offset = buffer_offset_ + static_cast<int64_t>(position_);
  bool any = false;
  while (true) {
    if (position_ == buffer_.size()) {
      if (!refill()) return any;
      if (!any) offset = buffer_offset_;
    }
    any = true;
    const char* start = buffer_.data() + position_;
    const size_t available = buffer_.size() - position_;
    const void* newline = std::memchr(start, '\n', available);
    if (newline != nullptr) {
      const size_t n = static_cast<size_t>(static_cast<const char*>(newline) - start);
      line.append(start, n);
      position_ += n + 1;
      return true;
    }
    line.append(start, available);
    position_ = buffer_.size();
  }
}

}  // namespace dssm::data
