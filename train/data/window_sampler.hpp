// WindowSampler: the training (or validation) windows a trainer draws, one batch at a time.
//
//   auto data = TokenDataset::open({"data/linux-doc/shards"}, {.vocab_size = model.vocab});
//   WindowSampler sampler(data, {.seq_len = 2048, .seed = 1, .rank = r, .world_size = w});
//   std::vector<int32_t> batch(B * (2048 + 1));
//   sampler.next_batch(B, batch.data());  // row b: inputs = [0, L), targets = [1, L + 1)
//   checkpoint["data"] = to_json(sampler.cursor());   ...   sampler.restore(cursor_from_json(j));
//
// How windows are defined. The dataset is one stream of tokens (documents back to back, with
// whatever separators the shards store: <eos> after each document for our Megatron shards).
// The last `validation_fraction` of the documents (at least one) is the validation split, the
// rest the training split: both are contiguous ranges of the stream, disjoint by document.
// A split's range is cut into windows at stride L = seq_len: window w holds the L + 1 tokens
// starting at w * L (so each token is a target exactly once per epoch). With `bos_first` (the
// paper's convention, as in LLaMA) a window is <bos> followed by the L tokens starting at w * L.
//
// Order. Sample s (counting all ranks together) belongs to epoch e = s / N (N windows per epoch)
// and is window P_e(s mod N), where P_e is a random permutation keyed by (seed, e)
// (RandomPermutation: no table in memory). Rank r of W draws samples r, r + W, r + 2W, ...: the
// ranks' streams are disjoint within an epoch and together cover every window once.
//
// Resuming. The cursor is the number of samples this rank has drawn, plus the settings it was
// drawn under; restore() checks that they match, then continues exactly where the cursor was.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "train/data/token_dataset.hpp"

namespace dssm::data {

enum class Split { train, validation };

struct SamplerOptions {
  int64_t seq_len = 2048;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  Split split = Split::train;
  double validation_fraction = 0.01;  // of the documents; use the same value for both splits
  bool bos_first = false;             // start every window with `bos_id`
  int32_t bos_id = 1;                 // LLaMA / our sentencepiece models: <bos> = 1
};

struct Cursor {
  int64_t samples = 0;  // windows this rank has drawn
  uint64_t seed = 0;
  int64_t seq_len = 0;
  int rank = 0;
  int world_size = 1;
  Split split = Split::train;
  bool bos_first = false;
  int64_t split_tokens = 0;  // size of the split's token range: detects a changed dataset
};

nlohmann::json to_json(const Cursor& cursor);
Cursor cursor_from_json(const nlohmann::json& json);

class WindowSampler {
 public:
  // Keeps a reference to `data`, which must outlive the sampler.
  WindowSampler(const TokenDataset& data, const SamplerOptions& options);

  int64_t window_length() const { return options_.seq_len + 1; }
  int64_t windows_per_epoch() const { return windows_; }
  int64_t epoch() const { return global_sample(samples_) / windows_; }
  // The split's token range [begin, end) in the dataset's stream.
  int64_t split_begin() const { return begin_; }
  int64_t split_end() const { return end_; }

  // Fills out[batch][seq_len + 1] with the next `batch` windows of this rank.
  void next_batch(int64_t batch, int32_t* out);
  // Writes window `w` (0 <= w < windows_per_epoch(), in stream order) to out[seq_len + 1].
  void window(int64_t w, int32_t* out) const;
  // The window index of global sample `s` (all ranks counted), i.e. P_e(s mod N).
  int64_t window_of_sample(int64_t s) const;

  Cursor cursor() const;
  void restore(const Cursor& cursor);

 private:
  int64_t global_sample(int64_t local) const { return local * options_.world_size + options_.rank; }

  const TokenDataset& data_;
  SamplerOptions options_;
  int64_t begin_ = 0, end_ = 0;
  int64_t windows_ = 0;
  int64_t samples_ = 0;
};

}  // namespace dssm::data
