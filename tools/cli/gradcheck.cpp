// dssm gradcheck [--op NAME] [--device cpu|cuda] [--json]
// Checks every registered op's analytic gradient against float64 central differences.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "cuda/backend.hpp"
#include "ops/registry.hpp"
#include "tools/cli/commands.hpp"

namespace dssm::cli {
namespace {

struct Options {
  std::string op;
  std::string device = "cpu";
  bool json = false;
};

int run(const Options& options) {
  const Device device = Device::parse(options.device);
  if (device.is_cuda()) cuda::require_device(device.index);
  const auto start = std::chrono::steady_clock::now();
  int checked = 0, failed = 0;
  if (!options.json) {
    fmt::print("{:<22} {:<7} {:>6} {:>12} {:>12}  {}\n", "op", "device", "inputs", "max abs err",
               "max rel err", "result");
  }
  for (const GradcheckCase& c : registered_ops()) {
    if (!options.op.empty() && c.name != options.op) continue;
    if (device.is_cuda() && !c.cuda) continue;
    const GradcheckResult r = gradcheck(c, device);
    ++checked;
    failed += r.passed ? 0 : 1;
    if (options.json) {
      nlohmann::json line = {{"op", r.op},
                             {"device", r.device},
                             {"inputs", r.inputs},
                             {"elements", r.elements},
                             {"max_abs_err", r.max_abs_err},
                             {"max_rel_err", r.max_rel_err},
                             {"passed", r.passed}};
      if (!r.error.empty()) line["error"] = r.error;
      fmt::print("{}\n", line.dump());
    } else {
      fmt::print("{:<22} {:<7} {:>6} {:>12.3e} {:>12.3e}  {}{}\n", r.op, r.device, r.inputs,
                 r.max_abs_err, r.max_rel_err, r.passed ? "pass" : "FAIL",
                 r.error.empty() || r.passed ? "" : " (" + r.error + ")");
    }
  }
  if (checked == 0) {
    fmt::print(stderr, "error: gradcheck: no registered op named '{}'\n", options.op);
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!options.json) {
    fmt::print("{} ops checked on {} in {:.1f} s: {} passed, {} failed\n", checked, device.str(),
               seconds, checked - failed, failed);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

void add_gradcheck_command(CLI::App& app) {
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "gradcheck", "Check every op's gradient against float64 finite differences");
  cmd->add_option("--op", options->op, "Check only this op");
  cmd->add_option("--device", options->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_flag("--json", options->json, "One JSON object per op");
  cmd->callback([options]() {
    const int code = run(*options);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace dssm::cli
