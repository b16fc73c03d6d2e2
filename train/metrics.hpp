// The metrics file of a run, <out>/metrics.jsonl: one JSON object per line, each with a "kind":
//   {"kind": "train", "step": 12, "loss": 6.1, "lr": 3e-4, "grad_norm": 0.8, "tokens": ...,
//    "tokens_per_s": ..., "elapsed_s": ..., "mfu": ...}           one per optimizer step
//   {"kind": "eval", "step": 100, "loss": 5.2, "perplexity": 181.3, "tokens": ...}
//   {"kind": "skip", "step": 40, "loss": "nan", "grad_norm": "inf", "in_a_row": 1}
// ("step" counts completed steps: the line of step s describes the update that made it s.)
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dssm::train {

class MetricsLog {
 public:
  // Opens `path` for appending. Lines of an earlier run past `keep_through_step` (what it
  // logged after the checkpoint now being resumed) are dropped first; keep_through_step < 0
  // starts an empty file.
  MetricsLog(std::string path, int64_t keep_through_step);

  void write(const nlohmann::json& record);  // appends one line and flushes
  const std::vector<nlohmann::json>& records() const { return records_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
  std::vector<nlohmann::json> records_;
};

// A JSON number, or the string "nan" / "inf" / "-inf" (JSON has no non-finite numbers).
nlohmann::json json_number(double value);

}  // namespace dssm::train
