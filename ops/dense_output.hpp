// DenseMamba's output of the selective scan when the dense hidden connection is the paper's
// (Eq. 13-17 with the Identity projection, one gate shared by the m previous layers and fusion by
// addition), as one op over channel-major rows [batch, channels, length]:
//
//   y = (own + g ⊙ sum_{i=1..m} r_i + D ⊙ x) ⊙ silu(z)
//
// own = C^l h^l, the layer's own read-out; r_i = C^l h^{l-i}, the read-outs of the shallower
// layers' states (ops/cross_layer_readout.hpp); g = silu(Select(x^l)), the gate (undefined: 1);
// D [channels], the skip parameter, broadcast over batch and length; x, the scan's input; z, the
// Mamba block's gate branch. Written with the elementwise ops this is some eight passes over
// [batch, channels, length] tensors forward and ten backward; here it is one each way.
#pragma once

#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

// The op's operands, checked and contiguous (also the CUDA kernels' interface).
struct DenseOutputInputs {
  Tensor own;
  std::vector<Tensor> readouts;
  Tensor gate, x, D, z;  // gate undefined: 1
};
// Their gradients. d r_i is one tensor for every i (undefined when the CPU or CUDA kernel is told
// not to write it: without a gate it equals d own); D's in f32 (f64 for f64 inputs).
struct DenseOutputGrads {
  Tensor own, readout, gate, x, z, D;
};

// own, every r_i, gate, x, z: [batch, channels, length] of one dtype and device; D: [channels].
// Differentiable in all of them.
Tensor dense_mamba_output(const Tensor& own, const std::vector<Tensor>& readouts,
                          const Tensor& gate, const Tensor& x, const Tensor& D, const Tensor& z);

}  // namespace dssm
