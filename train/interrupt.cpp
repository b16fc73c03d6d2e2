#include "train/interrupt.hpp"

#include <csignal>

namespace dssm::train {
namespace {

volatile std::sig_atomic_t stop_requested = 0;
struct sigaction previous_int, previous_term;

extern "C" void on_signal(int) {
  stop_requested = 1;
}

}  // namespace

StopRequestGuard::StopRequestGuard() {
  stop_requested = 0;
  struct sigaction action = {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // the next signal takes the default action
  sigaction(SIGINT, &action, &previous_int);
  sigaction(SIGTERM, &action, &previous_term);
}

StopRequestGuard::~StopRequestGuard() {
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);
}

bool StopRequestGuard::requested() {
  return stop_requested != 0;
}
void StopRequestGuard::request() {
  stop_requested = 1;
}

}  // namespace dssm::train
