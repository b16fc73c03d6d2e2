// The selective scan's bytes floor, shared by ssm_bench and scan_speed_of_light: every input read
// once and every output written once. Forward reads u, delta, z, B, C and writes y; backward reads
// those and dy and writes du, ddelta, dz (in the op's dtype, `elem` bytes) and dB, dC (accumulated
// in f32 or f64, `accum` bytes). A, D, the bias and their gradients are negligible.
#pragma once

namespace dssm::bench {

struct ScanBytes {
  double forward, backward;
};

inline ScanBytes scan_bytes(double tokens, double channels, double states, double elem,
                            double accum) {
  return {tokens * (4 * channels * elem + 2 * states * elem),
          tokens * (7 * channels * elem + 2 * states * elem + 2 * states * accum)};
}

}  // namespace dssm::bench
