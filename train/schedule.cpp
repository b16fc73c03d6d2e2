#include "train/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tensor/error.hpp"

namespace dssm::train {

int64_t warmup_steps_for(double warmup_ratio, int64_t total_steps) {
  if (warmup_ratio <= 0) return 0;
  const auto steps = static_cast<int64_t>(std::llround(warmup_ratio * total_steps));
  return std::clamp<int64_t>(steps, 1, total_steps);
}

double learning_rate(const Schedule& s, int64_t step) {
  if (step < s.warmup_steps) return s.lr * static_cast<double>(step + 1) / s.warmup_steps;
  if (s.kind == ScheduleKind::constant) return s.lr;
  const int64_t decay_steps = s.total_steps - s.warmup_steps;
  if (decay_steps <= 0) return s.lr;
  // The last step (total_steps - 1) ends on end_lr exactly.
  const double done = std::min(
      1.0, static_cast<double>(step - s.warmup_steps) / std::max<int64_t>(1, decay_steps - 1));
  if (s.kind == ScheduleKind::cosine) {
    return s.end_lr + (s.lr - s.end_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * done));
  }
  return s.end_lr + (s.lr - s.end_lr) * std::pow(1.0 - done, s.power);
}

ScheduleKind schedule_kind_from_name(const std::string& name) {
  if (name == "polynomial") return ScheduleKind::polynomial;
  if (name == "cosine") return ScheduleKind::cosine;
  if (name == "constant") return ScheduleKind::constant;
  fail("schedule", "unknown schedule '{}' (expected polynomial, cosine or constant)", name);
}

std::string schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::polynomial:
      return "polynomial";
    case ScheduleKind::cosine:
      return "cosine";
    case ScheduleKind::constant:
      return "constant";
  }
  return "?";
}

}  // namespace dssm::train
