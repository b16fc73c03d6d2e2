#include "train/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "nn/safetensors.hpp"
#include "tensor/error.hpp"
#include "train/data/atomic_file.hpp"

namespace dssm::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kTrainerFile = "trainer.json";

fs::path checkpoints_dir(const std::string& out_dir) {
  return fs::path(out_dir) / "checkpoints";
}

std::string step_name(int64_t step) {
  return fmt::format("step-{:08d}", step);
}

// Flushes a file's or a directory's contents to disk (a directory: the names in it).
void sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  DSSM_CHECK(fd >= 0, "checkpoint", "cannot open '{}' to sync it: {}", path.string(),
             std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  DSSM_CHECK(ok, "checkpoint", "cannot sync '{}' to disk: {}", path.string(), std::strerror(error));
}

void write_json(const fs::path& path, const nlohmann::json& json) {
  const std::string text = json.dump(2) + "\n";
  data::AtomicFile file(path.string());
  file.write(text.data(), text.size());
  file.commit();
}

}  // namespace

nlohmann::json TrainerState::to_json() const {
  return {{"step", step},
          {"run_config", run_config},
          {"data_cursor", data_cursor},
          {"rng", {{"dropout_seed", dropout_seed}, {"dropout_offset", dropout_offset}}},
          {"lr_schedule", lr_schedule},
          {"tokens_seen", tokens_seen},
          {"elapsed_s", elapsed_s},
          {"bad_steps_in_row", bad_steps_in_row}};
}

TrainerState TrainerState::from_json(const nlohmann::json& json, const std::string& where) {
  try {
    TrainerState s;
    s.step = json.at("step").get<int64_t>();
    s.run_config = json.at("run_config");
    s.data_cursor = json.at("data_cursor");
    s.dropout_seed = json.at("rng").at("dropout_seed").get<uint64_t>();
    s.dropout_offset = json.at("rng").at("dropout_offset").get<uint64_t>();
    s.lr_schedule = json.at("lr_schedule");
    s.tokens_seen = json.at("tokens_seen").get<int64_t>();
    s.elapsed_s = json.at("elapsed_s").get<double>();
    s.bad_steps_in_row = json.at("bad_steps_in_row").get<int64_t>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail(where, "not a trainer state: {}", e.what());
  }
}

std::string save_training_checkpoint(const std::string& out_dir, const TrainerState& state,
                                     const AdamW& optimizer,
                                     const std::function<void(const std::string&)>& write_model,
                                     int64_t keep) {
  const fs::path root = checkpoints_dir(out_dir);
  const fs::path final_dir = root / step_name(state.step);
  const fs::path partial = root / (".partial-" + step_name(state.step));
  std::error_code ec;
  fs::create_directories(root, ec);
  DSSM_CHECK(!ec, "checkpoint", "cannot create '{}': {}", root.string(), ec.message());
  // The same step saved twice holds the same state (a run resumed and stopped at once).
  if (fs::exists(final_dir / kTrainerFile)) return final_dir.string();
  fs::remove_all(partial, ec);
  try {
    fs::create_directories(partial);
    write_model(partial.string());
    nn::save_safetensors((partial / kOptimizerFile).string(), optimizer.state(),
                         {{"steps", std::to_string(optimizer.steps_taken())}});
    write_json(partial / kTrainerFile, state.to_json());
    for (const auto& entry : fs::directory_iterator(partial)) sync_path(entry.path());
    sync_path(partial);
    fs::rename(partial, final_dir);
    sync_path(root);
  } catch (const std::exception& e) {
    fs::remove_all(partial, ec);
    fail("checkpoint", "writing step {} into '{}' failed, the earlier checkpoints are intact: {}",
         state.step, root.string(), e.what());
  }
  // <out>/latest: a symbolic link to the newest checkpoint, replaced atomically.
  const fs::path latest = fs::path(out_dir) / "latest", temporary = fs::path(out_dir) / ".latest";
  fs::remove(temporary, ec);
  fs::create_directory_symlink(fs::path("checkpoints") / step_name(state.step), temporary, ec);
  if (!ec) fs::rename(temporary, latest, ec);
  DSSM_CHECK(!ec, "checkpoint", "cannot point '{}' at {}: {}", latest.string(), final_dir.string(),
             ec.message());
  // Keep the newest `keep`; also clear partial directories left by an earlier crash.
  const std::vector<std::string> all = list_checkpoints(out_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i], ec);
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.path().filename().string().starts_with(".partial-")) fs::remove_all(entry, ec);
  }
  return final_dir.string();
}

std::vector<std::string> list_checkpoints(const std::string& out_dir) {
  const fs::path root = checkpoints_dir(out_dir);
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  static const std::regex kName("step-([0-9]+)");
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, kName) || !fs::exists(entry.path() / kTrainerFile)) continue;
    found.emplace_back(std::stoll(match[1]), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [_, path] : found) out.push_back(std::move(path));
  return out;
}

std::string latest_checkpoint(const std::string& out_dir) {
  const std::vector<std::string> all = list_checkpoints(out_dir);
  return all.empty() ? "" : all.back();
}

TrainerState read_trainer_state(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / kTrainerFile).string();
  std::ifstream in(path);
  DSSM_CHECK(in.good(), path, "cannot open the trainer state");
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
  DSSM_CHECK(!json.is_discarded(), path, "not valid JSON");
  return TrainerState::from_json(json, path);
}

void load_optimizer_state(AdamW& optimizer, const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / kOptimizerFile).string();
  const nn::SafetensorsContents file = nn::load_safetensors(path);
  const auto steps = file.metadata.find("steps");
  DSSM_CHECK(steps != file.metadata.end(), path, "metadata 'steps' is missing");
  try {
    optimizer.load_state(file.tensors, std::stoll(steps->second));
  } catch (const Error& e) {
    fail(path, "{}", e.what());
  }
}

}  // namespace dssm::train
