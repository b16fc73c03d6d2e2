#include "train/data/window_sampler.hpp"

#include <algorithm>
#include <cmath>

#include "tensor/error.hpp"
#include "tensor/random.hpp"
#include "train/data/permutation.hpp"

namespace dssm::data {
namespace {

std::string_view split_name(Split split) {
  return split == Split::train ? "train" : "validation";
}

// Keys of the per-epoch permutations: a Philox draw of (seed, epoch), so nearby seeds or epochs
// give unrelated orders.
uint64_t epoch_key(uint64_t seed, int64_t epoch) {
  const PhiloxWords r = philox4x32_10(seed, static_cast<uint64_t>(epoch));
  return (static_cast<uint64_t>(r.w[1]) << 32) | r.w[0];
}

}  // namespace

WindowSampler::WindowSampler(const TokenDataset& data, const SamplerOptions& options)
    : data_(data), options_(options) {
  const char* where = "WindowSampler";
  DSSM_CHECK(options.seq_len > 0, where, "seq_len {}, expected > 0", options.seq_len);
  DSSM_CHECK(options.world_size > 0 && options.rank >= 0 && options.rank < options.world_size,
             where, "rank {} of world size {}, expected 0 <= rank < world size", options.rank,
             options.world_size);
  DSSM_CHECK(options.validation_fraction >= 0 && options.validation_fraction < 1, where,
             "validation_fraction {}, expected in [0, 1)", options.validation_fraction);
  const int64_t documents = data.num_documents();
  DSSM_CHECK(documents > 0, where, "the dataset has no documents");
  const int64_t validation_documents =
      options.validation_fraction == 0
          ? 0
          : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(options.validation_fraction *
                                                                static_cast<double>(documents))));
  const int64_t boundary = data.document_start(documents - validation_documents);
  begin_ = options.split == Split::train ? 0 : boundary;
  end_ = options.split == Split::train ? boundary : data.num_tokens();
  // A window reads L tokens of the stream with bos_first, else L + 1.
  const int64_t L = options.seq_len, read = options.bos_first ? L : L + 1;
  const int64_t tokens = end_ - begin_;
  windows_ = tokens >= read ? (tokens - read) / L + 1 : 0;
  DSSM_CHECK(
      windows_ > 0, where,
      "the {} split has {} tokens ({} of {} documents), fewer than one window of {} tokens",
      split_name(options.split), tokens,
      options.split == Split::train ? documents - validation_documents : validation_documents,
      documents, read);
}

int64_t WindowSampler::window_of_sample(int64_t s) const {
  const int64_t epoch = s / windows_;
  const RandomPermutation order(static_cast<uint64_t>(windows_), epoch_key(options_.seed, epoch));
  return static_cast<int64_t>(order(static_cast<uint64_t>(s % windows_)));
}

void WindowSampler::window(int64_t w, int32_t* out) const {
  DSSM_CHECK(w >= 0 && w < windows_, "WindowSampler", "window {} out of range [0, {})", w,
             windows_);
  const int64_t first = begin_ + w * options_.seq_len;
  if (options_.bos_first) {
    out[0] = options_.bos_id;
    data_.read(first, options_.seq_len, out + 1);
  } else {
    data_.read(first, options_.seq_len + 1, out);
  }
}

void WindowSampler::next_batch(int64_t batch, int32_t* out) {
  for (int64_t b = 0; b < batch; ++b) {
    window(window_of_sample(global_sample(samples_)), out + b * window_length());
    ++samples_;
  }
}

Cursor WindowSampler::cursor() const {
  return Cursor{.samples = samples_,
                .seed = options_.seed,
                .seq_len = options_.seq_len,
                .rank = options_.rank,
                .world_size = options_.world_size,
                .split = options_.split,
                .bos_first = options_.bos_first,
                .split_tokens = end_ - begin_};
}

void WindowSampler::restore(const Cursor& c) {
  const Cursor mine = cursor();
  const bool same = c.seed == mine.seed && c.seq_len == mine.seq_len && c.rank == mine.rank &&
                    c.world_size == mine.world_size && c.split == mine.split &&
                    c.bos_first == mine.bos_first && c.split_tokens == mine.split_tokens;
  DSSM_CHECK(
      same, "WindowSampler::restore",
      "cursor drawn with seed {}, seq_len {}, rank {}/{}, split {}, bos_first {}, {} split "
      "tokens; expected seed {}, seq_len {}, rank {}/{}, split {}, bos_first {}, {} split tokens",
      c.seed, c.seq_len, c.rank, c.world_size, split_name(c.split), c.bos_first, c.split_tokens,
      mine.seed, mine.seq_len, mine.rank, mine.world_size, split_name(mine.split), mine.bos_first,
      mine.split_tokens);
  DSSM_CHECK(c.samples >= 0, "WindowSampler::restore", "samples {}, expected >= 0", c.samples);
  samples_ = c.samples;
}

nlohmann::json to_json(const Cursor& c) {
  return {{"samples", c.samples},       {"seed", c.seed},
          {"seq_len", c.seq_len},       {"rank", c.rank},
          {"world_size", c.world_size}, {"split", split_name(c.split)},
          {"bos_first", c.bos_first},   {"split_tokens", c.split_tokens}};
}

Cursor cursor_from_json(const nlohmann::json& j) {
  try {
    const std::string split = j.at("split").get<std::string>();
    DSSM_CHECK(split == "train" || split == "validation", "cursor",
               "split '{}', expected train or "
               "validation",
               split);
    return Cursor{.samples = j.at("samples").get<int64_t>(),
                  .seed = j.at("seed").get<uint64_t>(),
                  .seq_len = j.at("seq_len").get<int64_t>(),
                  .rank = j.at("rank").get<int>(),
                  .world_size = j.at("world_size").get<int>(),
                  .split = split == "train" ? Split::train : Split::validation,
                  .bos_first = j.at("bos_first").get<bool>(),
                  .split_tokens = j.at("split_tokens").get<int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    fail("cursor", "malformed cursor {}: {}", j.dump(), e.what());
  }
}

}  // namespace dssm::data
