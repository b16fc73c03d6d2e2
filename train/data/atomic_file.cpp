#include "train/data/atomic_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tensor/error.hpp"

namespace dssm::data {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  file_ = std::fopen(temporary_path().c_str(), "wb");
  DSSM_CHECK(file_ != nullptr, temporary_path(), "cannot create: {}", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove(temporary_path().c_str());
}

void AtomicFile::write(const void* bytes, size_t count) {
  DSSM_CHECK(file_ != nullptr, path_, "write after close");
  DSSM_CHECK(std::fwrite(bytes, 1, count, file_) == count, temporary_path(),
             "write of {} bytes at offset {} failed: {}", count, size_, std::strerror(errno));
  size_ += static_cast<int64_t>(count);
}

void AtomicFile::write_at(int64_t offset, const void* bytes, size_t count) {
  DSSM_CHECK(file_ != nullptr, path_, "write after close");
  const bool ok = std::fseek(file_, offset, SEEK_SET) == 0 &&
                  std::fwrite(bytes, 1, count, file_) == count &&
                  std::fseek(file_, 0, SEEK_END) == 0;
  DSSM_CHECK(ok, temporary_path(), "rewrite of {} bytes at offset {} failed: {}", count, offset,
             std::strerror(errno));
}

void AtomicFile::close() {
  DSSM_CHECK(file_ != nullptr, path_, "closed twice");
  const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int error = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  DSSM_CHECK(ok && closed, temporary_path(), "cannot flush to disk: {}", std::strerror(error));
}

void AtomicFile::rename_into_place() {
  DSSM_CHECK(file_ == nullptr, path_, "rename before close");
  DSSM_CHECK(std::rename(temporary_path().c_str(), path_.c_str()) == 0, path_,
             "cannot rename {} into place: {}", temporary_path(), std::strerror(errno));
  committed_ = true;
}

}  // namespace dssm::data
