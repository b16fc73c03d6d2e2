// The pieces of the selective scan that ops built from it share (ops/selective_scan.cpp defines
// them; ops/cross_layer_readout.cpp uses them): the operand check, and the kernels of a pass of
// scans run on CUDA when they fit it, else on the CPU (on host copies for GPU tensors).
#pragma once

#include <vector>

#include "ops/selective_scan.hpp"

namespace dssm::scan_dispatch {

// Checks the operands (full sequence when `step` is false, one token when true) and returns them
// detached and contiguous, ready for a kernel; `op` names the caller in errors.
ScanInputs checked_operands(const ScanInputs& in, bool step, const char* op);

// The forward, backward and read-out dC of every job, one CUDA launch for all of them when they
// fit the kernels (the jobs of a pass share their shapes).
void scan_forward(const std::vector<ScanForwardJob>& jobs);
void scan_backward(const std::vector<ScanBackwardJob>& jobs);
void readout_dC(const std::vector<ReadoutGradJob>& jobs);

// The gradient buffers of one scan as ScanGradients documents them; dC is `shared_dC` when
// given (scans read out by one C add into one buffer).
ScanGradients new_gradients(const ScanInputs& in, const Tensor& shared_dC = Tensor());

// A gradient as the op's input takes it: the state-dtype sums converted to the inputs' dtype.
Tensor as_input(const Tensor& grad, DType dtype);

// The gradients of a scan's operands as its op returns them, in ScanInputs' order (u, delta, A,
// B, C, D, z, delta_bias; undefined for absent operands), the sums in the inputs' dtype.
std::vector<Tensor> operand_gradients(const ScanGradients& g, DType dtype);

// Where the CUDA forward keeps the chunk entry states for a backward that will follow (undefined
// when none follows or the scan runs on the CPU).
Tensor chunk_entry_for(const ScanInputs& in, bool backward_follows);

}  // namespace dssm::scan_dispatch
