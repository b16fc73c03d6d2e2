// WordCache: the token ids of words seen before, for Tokenizer::encode. One flat open-addressing
// table (linear probing, power-of-two size) whose slots point into two arenas, one for the words'
// bytes and one for their ids: a lookup hashes the word once and compares bytes in place, and
// nothing is allocated per word. Not thread-safe: each encoding thread owns one.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dssm::data {

// A fast 64-bit hash of a short byte string (8 bytes at a time, multiply-xorshift mixing).
uint64_t hash_bytes(std::string_view bytes);

class WordCache {
 public:
  // Words longer than this are not cached (rare, and they would crowd the arenas).
  static constexpr size_t kMaxWordBytes = 256;

  // The ids cached for `word`, or false.
  bool find(std::string_view word, std::span<const int32_t>& ids) const;
  // Caches the ids of a word that `find` did not find; empties the cache first when it is full.
  void insert(std::string_view word, std::span<const int32_t> ids);
  void clear();
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t tag = 0;  // the high half of the word's hash
    uint32_t word_at = 0, ids_at = 0;
    uint16_t word_size = 0, ids_size = 0;  // word_size 0: an empty slot
  };
  static constexpr size_t kMaxWords = size_t{1} << 20;
  static constexpr size_t kFirstSlots = size_t{1} << 16;

  // The slot holding `word`, or the empty slot where it would go.
  size_t slot_of(std::string_view word, uint64_t h) const;
  void grow();  // doubles the table, keeping it at most half full

  std::vector<Slot> slots_ = std::vector<Slot>(kFirstSlots);
  std::vector<char> words_;
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

}  // namespace dssm::data
