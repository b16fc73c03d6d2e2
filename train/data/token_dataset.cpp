#include "train/data/token_dataset.hpp"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "tensor/error.hpp"

namespace dssm::data {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t matches{};
  const int status = ::glob(pattern.c_str(), 0, nullptr, &matches);
  std::vector<std::string> paths(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
  ::globfree(&matches);
  DSSM_CHECK(status == 0 || status == GLOB_NOMATCH, pattern, "glob failed (code {})", status);
  return paths;  // glob() sorts
}

// A file that is part of a shard: an .idx, a .bin without an .idx beside it, or a .tok.
bool is_shard_file(const fs::path& p) {
  if (p.extension() == ".idx" || p.extension() == ".tok") return true;
  return p.extension() == ".bin" && !fs::exists(fs::path(p).replace_extension(".idx"));
}

}  // namespace

std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> shards;
  for (const std::string& entry : paths) {
    std::vector<std::string> found;
    if (fs::is_directory(entry)) {
      for (const auto& item : fs::directory_iterator(entry)) {
        if (item.is_regular_file() && is_shard_file(item.path())) found.push_back(item.path());
      }
      std::sort(found.begin(), found.end());
    } else if (entry.find_first_of("*?[") != std::string::npos) {
      for (const std::string& p : glob_paths(entry)) {
        if (is_shard_file(p)) found.push_back(p);
      }
    } else {
      found.push_back(entry);
    }
    DSSM_CHECK(!found.empty(), entry,
               "no shard found (expected .idx/.bin, llm.c .bin or .tok files)");
    shards.insert(shards.end(), found.begin(), found.end());
  }
  return shards;
}

TokenDataset TokenDataset::open(const std::vector<std::string>& paths,
                                const DatasetOptions& options) {
  TokenDataset dataset;
  for (const std::string& path : expand_shard_paths(paths)) {
    TokenShard shard = open_shard(path, options.llmc_separator);
    if (options.vocab_size > 0) shard.check_vocabulary(options.vocab_size);
    dataset.shard_first_token_.push_back(dataset.num_tokens() + shard.num_tokens);
    dataset.shard_first_document_.push_back(dataset.num_documents() + shard.num_documents);
    dataset.shards_.push_back(std::move(shard));
  }
  return dataset;
}

int64_t TokenDataset::document_start(int64_t d) const {
  DSSM_CHECK(d >= 0 && d <= num_documents(), "TokenDataset", "document {} out of range [0, {})", d,
             num_documents());
  if (d == num_documents()) return num_tokens();
  const auto it =
      std::upper_bound(shard_first_document_.begin(), shard_first_document_.end(), d) - 1;
  const size_t s = static_cast<size_t>(it - shard_first_document_.begin());
  return shard_first_token_[s] + shards_[s].document_start(d - *it);
}

std::vector<int32_t> TokenDataset::document(int64_t d) const {
  std::vector<int32_t> tokens(static_cast<size_t>(document_length(d)));
  read(document_start(d), static_cast<int64_t>(tokens.size()), tokens.data());
  return tokens;
}

void TokenDataset::read(int64_t first, int64_t count, int32_t* out) const {
  DSSM_CHECK(first >= 0 && count >= 0 && first + count <= num_tokens(), "TokenDataset",
             "tokens [{}, {}) out of range [0, {})", first, first + count, num_tokens());
  size_t s = static_cast<size_t>(
      std::upper_bound(shard_first_token_.begin(), shard_first_token_.end(), first) -
      shard_first_token_.begin() - 1);
  while (count > 0) {
    const int64_t local = first - shard_first_token_[s];
    const int64_t n = std::min(count, shards_[s].num_tokens - local);
    shards_[s].read(local, n, out);
    out += n, first += n, count -= n;
    ++s;
  }
}

}  // namespace dssm::data
