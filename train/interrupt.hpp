// Ctrl-C during training. While a StopRequestGuard is alive, the first SIGINT or SIGTERM only
// sets a flag: the training loop finishes its step, writes a checkpoint and returns. A second
// signal gets the default action (the program ends at once).
#pragma once

namespace dssm::train {

class StopRequestGuard {
 public:
  StopRequestGuard();   // installs the handlers and clears the flag
  ~StopRequestGuard();  // restores the previous handlers
  StopRequestGuard(const StopRequestGuard&) = delete;
  StopRequestGuard& operator=(const StopRequestGuard&) = delete;

  static bool requested();
  static void request();  // what the handler does; also for tests
};

}  // namespace dssm::train
