// A file written under a temporary name (`path.tmp`) and renamed to `path` only by commit(), so a
// reader never sees a half-written shard. Destroyed without commit (an error, an exception), the
// temporary file is removed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace dssm::data {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* bytes, size_t count);
  template <typename T>
  void write_value(const T& value) {
    write(&value, sizeof(T));
  }
  // Overwrites bytes at `offset` (for headers whose counts are known only at the end).
  void write_at(int64_t offset, const void* bytes, size_t count);
  int64_t size() const { return size_; }
  // Flushes, syncs and closes the temporary file (step 1 of committing).
  void close();
  // Renames the temporary file to its final name (step 2; call after close()).
  void rename_into_place();
  void commit() { close(), rename_into_place(); }

  const std::string& path() const { return path_; }
  std::string temporary_path() const { return path_ + ".tmp"; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace dssm::data
