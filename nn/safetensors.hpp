// The safetensors file format (Hugging Face), the format of our checkpoints:
//
//   bytes [0, 8)        N, the header length, a little-endian u64
//   bytes [8, 8 + N)    a JSON object, padded with spaces to a multiple of 8 bytes:
//                         {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
//                          ..., "__metadata__": {"<key>": "<string value>", ...}}
//   bytes [8 + N, end)  the data section: each tensor's row-major little-endian bytes at
//                       [b, e) relative to the section's start
//
// dtypes: F32, F64, BF16, I32, I64 (the ones a Tensor can hold). The reader is strict, like the
// reference implementation: the tensors must tile the data section exactly (no overlap, no gap,
// nothing after the last one), and e - b must equal numel * dtype size.
#pragma once

#include <map>
#include <string>

#include "tensor/tensor.hpp"

namespace dssm::nn {

struct SafetensorsContents {
  std::map<std::string, Tensor> tensors;  // on the CPU, in the file's dtypes
  std::map<std::string, std::string> metadata;
};

// Writes the tensors (any device, dtype, strides) and optional string metadata to `path`
// atomically: into a temporary file next to it, fsync'ed, then renamed over `path`. Tensors are
// laid out in name order.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file. Every malformation is a dssm::Error naming the file and, where there is
// one, the tensor: a header length past the end, malformed JSON, a missing or ill-typed field,
// an unknown dtype, offsets out of range, overlapping, leaving gaps, or not matching the shape.
SafetensorsContents load_safetensors(const std::string& path);

// The safetensors name of a dtype ("F32", ...), and back (throws naming `where` otherwise).
std::string safetensors_dtype_name(DType dtype);
DType safetensors_dtype(const std::string& name, const std::string& where);

}  // namespace dssm::nn
