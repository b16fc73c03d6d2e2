#include "train/metrics.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "tensor/error.hpp"
#include "train/data/atomic_file.hpp"

namespace dssm::train {

MetricsLog::MetricsLog(std::string path, int64_t keep_through_step) : path_(std::move(path)) {
  if (keep_through_step >= 0 && std::filesystem::exists(path_)) {
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      if (record.is_discarded() || !record.contains("step")) continue;  // a torn last line
      if (record["step"].get<int64_t>() <= keep_through_step) records_.push_back(record);
    }
  }
  // Rewrite what is kept, atomically, then append to it.
  {
    data::AtomicFile file(path_);
    for (const auto& record : records_) {
      const std::string line = record.dump() + "\n";
      file.write(line.data(), line.size());
    }
    file.commit();
  }
  out_.open(path_, std::ios::app);
  DSSM_CHECK(out_.good(), "metrics", "cannot open '{}' for appending: {}", path_,
             std::strerror(errno));
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
  DSSM_CHECK(out_.good(), "metrics", "cannot write to '{}'", path_);
  records_.push_back(record);
}

nlohmann::json json_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return value;
}

}  // namespace dssm::train
