// Tokenizer: a sentencepiece model (.model), loaded from a file — the LLaMA tokenizer is one,
// vocabulary 32000, <unk> = 0, <bos> = 1, <eos> = 2 — or trained here on local text with
// train_tokenizer(). Encoding is thread-safe (const), so `data prepare` shares one instance.
// Built without libsentencepiece, every entry point throws a dssm::Error that says so.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace dssm::data {

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();

  // No <bos>/<eos> added. Fast path (same ids as encode_whole): sentencepiece's BPE never merges
  // across the start of a word — a run of spaces before other characters — when no piece holds
  // a space after another character (true of LLaMA's BPE model and of ours). A text's ids are then
  // its words' ids end to end, and words repeat, so a per-thread WordCache skips most of the
  // work; a word not seen before is encoded by sentencepiece. Checked at load: a BPE model
  // (unigram breaks ties by position), the pieces, and probe texts; a model that fails the check
  // always encodes whole texts.
  std::vector<int32_t> encode(std::string_view text) const;
  std::vector<int32_t> encode_whole(std::string_view text) const;  // one sentencepiece call
  bool word_cache_enabled() const { return word_cache_; }
  std::string decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  const std::string& path() const { return path_; }

 private:
  bool pieces_allow_word_split() const;
  bool probes_agree() const;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  uint64_t instance_ = 0;  // tells the per-thread caches of different tokenizers apart
  bool word_cache_ = false;
};

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // raw text files or globs (see raw_documents.hpp)
  std::string model_prefix;         // writes model_prefix.model and model_prefix.vocab
  int32_t vocab_size = 32000;
  std::string model_type = "bpe";     // bpe, unigram, char or word
  int64_t max_sentences = 2'000'000;  // lines sampled from the input (0: all of them)
  int threads = 0;                    // 0: all cores
};

// Trains a LLaMA-style model: <unk> 0, <bos> 1, <eos> 2, no <pad>; no text normalisation,
// digits split, unknown characters spelled as bytes (byte fallback), so decode(encode(s)) == s
// for any valid UTF-8 with single spaces inside lines. Each line of each document is one
// training sentence.
void train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace dssm::data
