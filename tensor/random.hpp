// The counter-based generator behind rand, randn and dropout: Philox-4x32-10 (Salmon et al.,
// "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
//
// Stream definition (identical on CPU and CUDA, so the same seed gives the same numbers):
// element i of a tensor drawn when the generator's offset is `off` takes the four 32-bit words
//   philox(key = seed, counter = (off + i) as two 32-bit halves, 0, 0)
// and uses word 0 for a uniform f32, words 0 and 1 for a uniform f64 or a normal (Box-Muller).
// Each draw then advances the offset by the tensor's element count.
#pragma once

#include <cmath>
#include <cstdint>

#include "tensor/bf16.hpp"

namespace dssm {

struct PhiloxWords {
  uint32_t w[4];
};

DSSM_HOST_DEVICE PhiloxWords philox4x32_10(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1): 24 random bits for f32, 53 for f64.
DSSM_HOST_DEVICE float uniform_f32(const PhiloxWords& r) {
  return static_cast<float>(r.w[0] >> 8) * (1.0f / 16777216.0f);
}
DSSM_HOST_DEVICE double uniform_f64(const PhiloxWords& r) {
  const uint64_t bits = (static_cast<uint64_t>(r.w[0]) << 21) ^ (r.w[1] >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller from words 0 and 1; u1 in (0, 1] so the log is finite.
DSSM_HOST_DEVICE float normal_f32(const PhiloxWords& r) {
  const float u1 = (static_cast<float>(r.w[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);
  const float u2 = static_cast<float>(r.w[1] >> 8) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}
DSSM_HOST_DEVICE double normal_f64(const PhiloxWords& r) {
  const double u1 = (static_cast<double>(r.w[0]) + 1.0) * (1.0 / 4294967296.0);
  const double u2 = static_cast<double>(r.w[1]) * (1.0 / 4294967296.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// A seed and a running offset. Not thread-safe: one generator per thread of work.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves `count` counters and returns the first.
  uint64_t advance(uint64_t count) {
    const uint64_t first = offset_;
    offset_ += count;
    return first;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace dssm
