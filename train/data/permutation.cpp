#include "train/data/permutation.hpp"

#include <bit>

#include "tensor/error.hpp"
#include "tensor/random.hpp"

namespace dssm::data {

RandomPermutation::RandomPermutation(uint64_t n, uint64_t key) : n_(n), key_(key) {
  DSSM_CHECK(n > 0, "RandomPermutation", "empty domain");
  const int bits = std::max(2, static_cast<int>(std::bit_width(n - 1)));
  half_bits_ = (bits + 1) / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t RandomPermutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (uint64_t round = 0; round < 4; ++round) {
    const PhiloxWords r = philox4x32_10(key_, (round << 32) | right);
    const uint64_t f = (static_cast<uint64_t>(r.w[1]) << 32) | r.w[0];
    const uint64_t next = left ^ (f & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t RandomPermutation::operator()(uint64_t i) const {
  DSSM_CHECK(i < n_, "RandomPermutation", "index {} out of range [0, {})", i, n_);
  uint64_t x = encrypt(i);
  while (x >= n_) x = encrypt(x);
  return x;
}

}  // namespace dssm::data
