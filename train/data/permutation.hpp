// A random permutation of [0, n) that is computed, not stored: O(1) memory for any n, so a
// dataset of billions of windows can be shuffled per epoch.
//
// A Feistel network (4 rounds, Philox as the round function, keyed by `key`) is a bijection on
// the 2k-bit integers for the smallest 2k with 2^(2k) >= n; values that land outside [0, n) are
// encrypted again ("cycle walking") until they fall inside, which keeps it a bijection of [0, n).
// The walk takes fewer than 4 steps on average since 2^(2k) < 4n.
#pragma once

#include <cstdint>

namespace dssm::data {

class RandomPermutation {
 public:
  RandomPermutation(uint64_t n, uint64_t key);
  uint64_t operator()(uint64_t i) const;  // i in [0, n)
  uint64_t size() const { return n_; }

 private:
  uint64_t encrypt(uint64_t x) const;

  uint64_t n_;
  uint64_t key_;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
};

}  // namespace dssm::data
