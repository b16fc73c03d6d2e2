#include "train/data/word_cache.hpp"

#include <cstring>

namespace dssm::data {

uint64_t hash_bytes(std::string_view word) {
  constexpr uint64_t kMultiplier = 0x9E3779B97F4A7C15ull;
  uint64_t h = word.size() * kMultiplier;
  size_t at = 0;
  for (; at + 8 <= word.size(); at += 8) {
    uint64_t block;
    std::memcpy(&block, word.data() + at, 8);
    h = (h ^ block) * kMultiplier;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, word.data() + at, word.size() - at);
  h = (h ^ tail) * kMultiplier;
  return h ^ (h >> 32);
}

size_t WordCache::slot_of(std::string_view word, uint64_t h) const {
  const size_t mask = slots_.size() - 1;
  const auto tag = static_cast<uint32_t>(h >> 32);
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.word_size == 0) return i;
    if (slot.tag == tag && slot.word_size == word.size() &&
        std::memcmp(words_.data() + slot.word_at, word.data(), word.size()) == 0) {
      return i;
    }
  }
}

bool WordCache::find(std::string_view word, std::span<const int32_t>& ids) const {
  const Slot& slot = slots_[slot_of(word, hash_bytes(word))];
  if (slot.word_size == 0) return false;
  ids = {ids_.data() + slot.ids_at, slot.ids_size};
  return true;
}

void WordCache::insert(std::string_view word, std::span<const int32_t> ids) {
  if (word.empty() || word.size() > kMaxWordBytes) return;
  if (size_ == kMaxWords) clear();
  if (2 * (size_ + 1) > slots_.size()) grow();
  const uint64_t h = hash_bytes(word);
  Slot& slot = slots_[slot_of(word, h)];
  slot = {.tag = static_cast<uint32_t>(h >> 32),
          .word_at = static_cast<uint32_t>(words_.size()),
          .ids_at = static_cast<uint32_t>(ids_.size()),
          .word_size = static_cast<uint16_t>(word.size()),
          .ids_size = static_cast<uint16_t>(ids.size())};
  words_.insert(words_.end(), word.begin(), word.end());
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++size_;
}

void WordCache::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  const size_t mask = slots_.size() - 1;
  for (const Slot& slot : old) {
    if (slot.word_size == 0) continue;
    const uint64_t h = hash_bytes({words_.data() + slot.word_at, slot.word_size});
    size_t i = h & mask;
    while (slots_[i].word_size != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }
}

void WordCache::clear() {
  slots_.assign(kFirstSlots, Slot{});
  words_.clear();
  ids_.clear();
  size_ = 0;
}

}  // namespace dssm::data
