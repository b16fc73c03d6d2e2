// Constants and helpers shared by the shard readers and writers (train/data/megatron.cpp,
// llmc.cpp, flat.cpp). Not part of the public API: include train/data/shard.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "train/data/atomic_file.hpp"
#include "train/data/token_type.hpp"

namespace dssm::data {

class ShardWriter;

inline constexpr char kMegatronMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr int64_t kMegatronHeaderBytes = 9 + 8 + 1 + 8 + 8;
inline constexpr int32_t kLlmcMagic = 20240520;
inline constexpr int64_t kLlmcHeaderBytes = 256 * 4;
inline constexpr char kFlatMagic[8] = {'D', 'S', 'S', 'M', 'T', 'O', 'K', '\0'};
inline constexpr int64_t kFlatHeaderBytes = 32;

// Appends `tokens` converted to `type`; throws when an id does not fit the type.
void write_tokens(AtomicFile& file, TokenType type, std::span<const int32_t> tokens);

// The writers behind make_shard_writer (train/data/shard.hpp).
std::unique_ptr<ShardWriter> make_megatron_writer(const std::string& prefix, TokenType dtype);
std::unique_ptr<ShardWriter> make_llmc_writer(const std::string& path, TokenType dtype,
                                              int32_t separator);
std::unique_ptr<ShardWriter> make_flat_writer(const std::string& path, TokenType dtype);

// The first `count` bytes as hex ("4d 4d 49 ..."), for bad-magic messages.
std::string hex_bytes(const std::byte* bytes, int64_t count);

}  // namespace dssm::data
