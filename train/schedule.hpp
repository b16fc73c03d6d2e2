// The learning-rate schedule: a linear warm-up over the first warmup_steps steps, then one of
//   polynomial  lr(s) = end_lr + (lr - end_lr) * (1 - p)^power       (the paper's recipe)
//   cosine      lr(s) = end_lr + (lr - end_lr) * (1 + cos(pi * p)) / 2
//   constant    lr(s) = lr
// with p = (s - warmup_steps) / (total_steps - warmup_steps - 1) the fraction of the decay done
// (0 on the first step after warm-up, 1 on the last step, which so uses end_lr).
// Steps count from 0; warm-up step s uses lr * (s + 1) / warmup_steps, so no step has lr 0.
// The schedule is a pure function of the step: resuming needs only the step number.
#pragma once

#include <cstdint>
#include <string>

namespace dssm::train {

enum class ScheduleKind { polynomial, cosine, constant };

struct Schedule {
  ScheduleKind kind = ScheduleKind::polynomial;
  double lr = 6e-4;     // the peak, reached at the end of warm-up
  double end_lr = 0.0;  // the value at the last step (polynomial, cosine)
  double power = 1.0;   // polynomial only; 1 is a linear decay
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
};

// warmup_ratio of total_steps, rounded to the nearest step (at least 1 when the ratio is > 0).
int64_t warmup_steps_for(double warmup_ratio, int64_t total_steps);

double learning_rate(const Schedule& schedule, int64_t step);

ScheduleKind schedule_kind_from_name(const std::string& name);  // throws naming the choices
std::string schedule_kind_name(ScheduleKind kind);

}  // namespace dssm::train
