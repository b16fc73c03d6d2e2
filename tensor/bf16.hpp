// bfloat16: the top 16 bits of an IEEE float32. Stored as bf16, computed in f32.
// Conversion from f32 rounds to nearest, ties to even; NaN stays NaN (quiet).
// Usable from host and device code, so CPU and CUDA kernels round identically.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DSSM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DSSM_HOST_DEVICE inline
#endif

namespace dssm {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  DSSM_HOST_DEVICE explicit bf16(float value) : bits(round_from_float(value)) {}
  DSSM_HOST_DEVICE operator float() const { return to_float(bits); }

  DSSM_HOST_DEVICE static uint16_t round_from_float(float value) {
    uint32_t u;
    __builtin_memcpy(&u, &value, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
    const uint32_t lsb = (u >> 16) & 1u;  // ties go to the even neighbour
    u += 0x7fffu + lsb;
    return static_cast<uint16_t>(u >> 16);
  }
  DSSM_HOST_DEVICE static float to_float(uint16_t bits) {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float value;
    __builtin_memcpy(&value, &u, sizeof value);
    return value;
  }
};

}  // namespace dssm
