// Helpers of the data-pipeline tests: a scratch directory, little-endian byte building, random
// token documents.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace dssm::test {

// A fresh directory, removed with everything in it at the end of the scope.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            ("dssm_data_test_" + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Bytes appended value by value, little-endian (the test machines are little-endian).
struct Bytes {
  std::vector<char> data;
  template <typename T>
  Bytes& put(T value) {
    return put_raw(&value, sizeof(T));
  }
  Bytes& put_raw(const void* bytes, size_t count) {
    const size_t at = data.size();
    data.resize(at + count);
    std::memcpy(data.data() + at, bytes, count);
    return *this;
  }
  void save(const std::string& path) const {
    std::ofstream(path, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));
  }
};

inline std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A generator seeded afresh each run; the seed is printed with any failure.
inline std::mt19937_64 fresh_rng() {
  const uint64_t seed = std::random_device{}();
  UNSCOPED_INFO("random seed " << seed);
  return std::mt19937_64(seed);
}

// `count` documents of 1..max_length tokens with ids in [0, vocab).
inline std::vector<std::vector<int32_t>> random_documents(std::mt19937_64& rng, int count,
                                                          int max_length, int32_t vocab) {
  std::uniform_int_distribution<int> length(1, max_length);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::vector<std::vector<int32_t>> documents(static_cast<size_t>(count));
  for (auto& d : documents) {
    d.resize(static_cast<size_t>(length(rng)));
    for (auto& t : d) t = id(rng);
  }
  return documents;
}

}  // namespace dssm::test

#if DSSM_WITH_SENTENCEPIECE
#include "train/data/tokenizer.hpp"

namespace dssm::test {

inline std::string tiny_corpus() {
  return std::string(DSSM_TEST_DATA_DIR) + "/tiny_corpus.jsonl";
}

// A small BPE model trained once per test run on tests/data/tiny_corpus.jsonl.
inline const std::string& tiny_tokenizer() {
  static const ScratchDir dir;
  static const std::string model = [] {
    dssm::data::train_tokenizer({.inputs = {tiny_corpus()},
                                 .model_prefix = dir / "tiny",
                                 .vocab_size = 400,
                                 .model_type = "bpe",
                                 .threads = 1});
    return dir / "tiny.model";
  }();
  return model;
}

}  // namespace dssm::test
#endif
