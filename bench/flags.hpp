// Command-line flags of the op benchmarks (ssm_bench, retention_bench): `--name value` pairs,
// with the device and dtype every benchmark takes and per-device defaults for the sizes.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

namespace dssm::bench {

class Flags {
 public:
  // Reads argv as `--name value` pairs; a name outside `known` (or a missing value) is an error
  // naming the benchmark. --device (cpu | cuda[:i]) and --dtype are always known.
  Flags(int argc, char** argv, const char* bench, std::set<std::string> known) {
    known.insert({"--device", "--dtype"});
    for (int i = 1; i < argc; i += 2) {
      const std::string name = argv[i];
      DSSM_CHECK(known.count(name) > 0 && i + 1 < argc, bench,
                 "unknown option or missing value: {}", name);
      values_[name] = argv[i + 1];
    }
    device = Device::parse(text("--device", "cpu"));
    dtype = dtype_from_name(text("--dtype", device.is_cuda() ? "bf16" : "f32"));
  }

  std::string text(const std::string& name, const std::string& fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  // The integer value of `name`, or `cpu` / `gpu` by device when it is not given.
  int64_t integer(const std::string& name, int64_t cpu, int64_t gpu) const {
    const auto it = values_.find(name);
    return it == values_.end() ? (device.is_cuda() ? gpu : cpu) : std::stoll(it->second);
  }
  // A comma-separated list of integers, e.g. --chunk 64,128.
  std::vector<int64_t> list(const std::string& name, const std::string& cpu,
                            const std::string& gpu) const {
    std::vector<int64_t> values;
    std::stringstream in(text(name, device.is_cuda() ? gpu : cpu));
    for (std::string item; std::getline(in, item, ',');) values.push_back(std::stoll(item));
    return values;
  }

  Device device = Device::cpu();
  DType dtype = DType::f32;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace dssm::bench
