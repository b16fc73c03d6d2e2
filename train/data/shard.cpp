#include "train/data/shard.hpp"

#include <cstring>
#include <filesystem>

#include "tensor/error.hpp"
#include "train/data/formats.hpp"

namespace dssm::data {

std::string_view format_name(ShardFormat format) {
  switch (format) {
    case ShardFormat::megatron:
      return "megatron";
    case ShardFormat::llmc:
      return "llmc";
    case ShardFormat::flat:
      return "flat";
  }
  return "?";
}

ShardFormat parse_format(std::string_view name) {
  if (name == "megatron") return ShardFormat::megatron;
  if (name == "llmc") return ShardFormat::llmc;
  if (name == "flat") return ShardFormat::flat;
  fail("format", "unknown format '{}', expected megatron, llmc or flat", name);
}

std::string_view shard_extension(ShardFormat format) {
  return format == ShardFormat::flat ? ".tok" : format == ShardFormat::llmc ? ".bin" : "";
}

std::unique_ptr<ShardWriter> make_shard_writer(ShardFormat format, const std::string& path,
                                               TokenType dtype, int32_t llmc_separator) {
  switch (format) {
    case ShardFormat::megatron:
      return make_megatron_writer(path, dtype);
    case ShardFormat::llmc:
      return make_llmc_writer(path, dtype, llmc_separator);
    case ShardFormat::flat:
      return make_flat_writer(path, dtype);
  }
  fail("shard writer", "unknown format {}", static_cast<int>(format));
}

void TokenShard::check_vocabulary(int64_t vocab_size) const {
  const int64_t bad = first_token_outside(tokens, dtype, num_tokens, vocab_size);
  if (bad < 0) return;
  fail(path,
       "token {} at byte offset {} has id {}, expected an integer id in [0, {}) (the model's "
       "vocabulary)",
       bad, tokens_offset + bad * token_bytes(dtype), token_value(tokens, dtype, bad), vocab_size);
}

TokenShard open_shard(const std::string& path, int32_t llmc_separator) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (p.extension() == ".idx") return open_megatron(p.parent_path() / p.stem());
  if (p.extension() == ".bin" && fs::exists(fs::path(p).replace_extension(".idx"))) {
    return open_megatron(fs::path(p).replace_extension());
  }
  if (!fs::exists(p) && fs::exists(path + ".idx")) return open_megatron(path);
  MappedFile file(path);
  if (file.size() >= 4 && load<int32_t>(file.data(), 0) == kLlmcMagic) {
    return open_llmc(path, llmc_separator);
  }
  if (file.size() >= 8 && std::memcmp(file.data(), kFlatMagic, 8) == 0) return open_flat(path);
  fail(path,
       "unknown format at byte offset 0: expected an llm.c header (int32 {}), a flat token file "
       "(\"DSSMTOK\\0\") or a Megatron .bin/.idx pair",
       kLlmcMagic);
}

}  // namespace dssm::data
