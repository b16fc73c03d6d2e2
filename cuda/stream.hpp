// The stream on which densessm queues all work of the current device (cuda/runtime.cu), for host
// code that calls CUDA libraries or records events itself (benchmarks, collectives). Plain C++:
// needs only the CUDA runtime API header, not nvcc.
#pragma once

#include <cuda_runtime_api.h>

namespace dssm::cuda {

cudaStream_t current_stream();

}  // namespace dssm::cuda
