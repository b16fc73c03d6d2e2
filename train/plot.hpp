// The loss curve of a run as an SVG image: the training loss of every step (light), its moving
// average over 1 % of the steps shown (dark), and the validation loss at each eval (dots).
// Written to <out>/loss.svg at every checkpoint and at the end; any browser shows it.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dssm::train {

// records: the lines of metrics.jsonl (kinds "train" and "eval" are drawn, others ignored).
std::string loss_curve_svg(const std::vector<nlohmann::json>& records, const std::string& title);

// Writes loss_curve_svg to `path` atomically.
void write_loss_curve(const std::string& path, const std::vector<nlohmann::json>& records,
                      const std::string& title);

}  // namespace dssm::train
