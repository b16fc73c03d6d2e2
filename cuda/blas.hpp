// Settings of the GEMMs behind ops/matmul.cpp on CUDA (cuda/blas.cu).
#pragma once

namespace dssm::cuda {

// Lets f32 GEMMs use TF32 tensor cores: about 8x the throughput, with inputs rounded to 10
// mantissa bits (relative error ~1e-3). Off by default, so f32 results match the CPU to ~1e-6.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace dssm::cuda
