// Helpers of the trainer's tests: a scratch directory, the in-repo corpus as byte-level token
// shards, and small run configs of DenseRetNet and DenseMamba.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/data/shard.hpp"

namespace dssm::test {

// A fresh directory, removed with everything in it at the end of the scope.
class TrainScratch {
 public:
  TrainScratch() {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            ("dssm_train_test_" + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~TrainScratch() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Byte-level tokens: id = byte + 3 (0 <unk>, 1 <bos>, 2 <eos> as in our tokenizers).
constexpr int64_t kByteVocab = 259;

// The documents of tests/data/tiny_corpus.jsonl (twelve, 5.4 KB of English) as byte tokens,
// each followed by <eos>.
inline std::vector<std::vector<int32_t>> corpus_documents() {
  std::ifstream in(std::string(DSSM_TEST_DATA_DIR) + "/tiny_corpus.jsonl");
  std::vector<std::vector<int32_t>> documents;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const std::string text = nlohmann::json::parse(line)["text"].get<std::string>();
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
    ids.push_back(2);
    documents.push_back(std::move(ids));
  }
  REQUIRE(documents.size() == 12);
  return documents;
}

// Writes documents as one flat shard `path` and returns the path.
inline std::string write_shard(const std::string& path,
                               const std::vector<std::vector<int32_t>>& documents) {
  auto writer = data::make_shard_writer(data::ShardFormat::flat, path, data::TokenType::u16);
  for (const auto& d : documents) writer->add_document(d);
  writer->commit();
  return path;
}

// The corpus, the given number of times over (more windows per epoch), as one shard.
inline std::string write_corpus_shard(const std::string& path, int copies = 1) {
  std::vector<std::vector<int32_t>> documents;
  for (int c = 0; c < copies; ++c) {
    for (auto& d : corpus_documents()) documents.push_back(std::move(d));
  }
  return write_shard(path, documents);
}

// The unigram entropy (nats per token) of the corpus' tokens: the loss of the best model that
// ignores context.
inline double unigram_entropy(const std::vector<std::vector<int32_t>>& documents) {
  std::vector<double> counts(kByteVocab, 0.0);
  double total = 0;
  for (const auto& d : documents) {
    for (int32_t id : d) counts[static_cast<size_t>(id)] += 1, total += 1;
  }
  double h = 0;
  for (double c : counts) {
    if (c > 0) h -= c / total * std::log(c / total);
  }
  return h;
}

inline nlohmann::json tiny_densretnet() {
  return {{"arch", "densretnet"},
          {"vocab_size", kByteVocab},
          {"d_model", 48},
          {"n_layers", 2},
          {"n_heads", 2},
          {"qk_dim", 32},
          {"v_dim", 96},
          {"dense_m", 2},
          {"retention_form", "parallel"}};
}

inline nlohmann::json tiny_densemamba() {
  return {{"arch", "densemamba"}, {"vocab_size", kByteVocab},
          {"d_model", 48},        {"n_layers", 2},
          {"d_state", 8},         {"dense_m", 2}};
}

// Training settings of a short CPU run: quiet, no samples, evals and checkpoints only at the end.
inline nlohmann::json tiny_train(int64_t steps) {
  return {{"seed", 7},         {"steps", steps},        {"seq_len", 32},
          {"batch_size", 8},   {"micro_batch_size", 4}, {"lr", 3e-3},
          {"end_lr", 3e-4},    {"warmup_ratio", 0.05},  {"validation_fraction", 0.1},
          {"eval_every", 0},   {"eval_batches", 2},     {"checkpoint_every", 0},
          {"sample_tokens", 0}};
}

}  // namespace dssm::test
