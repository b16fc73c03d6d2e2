// BpeWords: sentencepiece's BPE encoding of one word, done here without sentencepiece's
// per-call machinery (normalizer offsets, a protobuf result, a priority queue): the same
// pieces and scores, the same rule. The text gets the dummy-prefix "▁" and its spaces become
// "▁"; it is split into UTF-8 characters; then, as long as two neighbours join into a piece, the
// pair whose piece scores highest is joined (the leftmost on ties); a final symbol that is no
// piece is spelt as byte pieces (<0xXX>, byte fallback).
//
// It reproduces sentencepiece only for models with an identity normalizer (no character map, no
// whitespace removal), byte fallback, and no user-defined or unused pieces: `from_model` returns
// nullptr for any other model, and Tokenizer compares the two on probe texts at load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dssm::data {

class BpeWords {
 public:
  // `model_proto`: a serialized sentencepiece ModelProto; nullptr for a model this does not
  // reproduce.
  static std::unique_ptr<BpeWords> from_model(std::string_view model_proto);

  // Appends the ids of `word` (valid UTF-8, no "▁") to `ids`, as SentencePieceProcessor::Encode.
  void encode(std::string_view word, std::vector<int32_t>& ids) const;

 private:
  // A slot of the open-addressing table of the pieces BPE may produce (linear probing).
  struct Piece {
    uint32_t at = 0, size = 0;  // the piece's bytes in text_; size 0: an empty slot
    int32_t id = 0;
    float score = 0;
  };
  BpeWords() = default;
  void add(uint32_t at, uint32_t size, int32_t id, float score);
  const Piece* find(std::string_view piece) const;

  std::string text_;           // the pieces' bytes end to end
  std::vector<Piece> pieces_;  // at most a quarter full
  int32_t byte_ids_[256] = {};
};

}  // namespace dssm::data
