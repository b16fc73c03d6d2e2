#include "train/config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>

#include "models/config.hpp"
#include "tensor/error.hpp"

namespace dssm::train {

Schedule TrainConfig::lr_schedule() const {
  return {.kind = schedule_kind_from_name(schedule),
          .lr = lr,
          .end_lr = end_lr,
          .power = power,
          .warmup_steps = warmup_steps_for(warmup_ratio, steps),
          .total_steps = steps};
}

nlohmann::json TrainConfig::to_json() const {
  return {{"seed", seed},
          {"steps", steps},
          {"seq_len", seq_len},
          {"batch_size", batch_size},
          {"micro_batch_size", micro_batch_size},
          {"schedule", schedule},
          {"lr", lr},
          {"end_lr", end_lr},
          {"warmup_ratio", warmup_ratio},
          {"power", power},
          {"beta1", adamw.beta1},
          {"beta2", adamw.beta2},
          {"eps", adamw.eps},
          {"weight_decay", adamw.weight_decay},
          {"grad_clip", grad_clip},
          {"dtype", std::string(dtype_name(dtype))},
          {"validation_fraction", validation_fraction},
          {"bos_first", bos_first},
          {"log_every", log_every},
          {"eval_every", eval_every},
          {"eval_batches", eval_batches},
          {"checkpoint_every", checkpoint_every},
          {"keep_checkpoints", keep_checkpoints},
          {"max_bad_steps", max_bad_steps},
          {"sample_tokens", sample_tokens},
          {"sample_temperature", sample_temperature},
          {"sample_prompt", sample_prompt}};
}

TrainConfig read_train_config(const nlohmann::json& section) {
  constexpr int64_t kMany = int64_t{1} << 40;
  TrainConfig c;
  // sample_prompt is free text (ConfigReader has no optional string): taken out first.
  nlohmann::json rest = section;
  std::vector<std::string> extra_problems;
  if (rest.is_object() && rest.contains("sample_prompt")) {
    if (rest["sample_prompt"].is_string()) {
      c.sample_prompt = rest["sample_prompt"].get<std::string>();
    } else {
      extra_problems.push_back(
          fmt::format("'sample_prompt' must be a string, got {}", rest["sample_prompt"].dump()));
    }
    rest.erase("sample_prompt");
  }
  models::ConfigReader r(rest, "config 'train' section");
  for (const auto& p : extra_problems) r.problem(p);
  c.seed = static_cast<uint64_t>(r.integer("seed", 0, 0, kMany));
  c.steps = r.integer("steps", c.steps, 1, kMany);
  c.seq_len = r.integer("seq_len", c.seq_len, 1, 1 << 20);
  c.batch_size = r.integer("batch_size", c.batch_size, 1, 1 << 24);
  c.micro_batch_size = r.integer("micro_batch_size", c.micro_batch_size, 1, 1 << 24);
  c.schedule = r.choice("schedule", c.schedule, {"polynomial", "cosine", "constant"});
  c.lr = r.real("lr", c.lr, 1e-12, 10.0);
  c.end_lr = r.real("end_lr", c.end_lr, 0.0, 10.0);
  c.warmup_ratio = r.real("warmup_ratio", c.warmup_ratio, 0.0, 1.0);
  c.power = r.real("power", c.power, 1e-6, 100.0);
  c.adamw.beta1 = r.real("beta1", c.adamw.beta1, 0.0, 0.999999);
  c.adamw.beta2 = r.real("beta2", c.adamw.beta2, 0.0, 0.999999);
  c.adamw.eps = r.real("eps", c.adamw.eps, 1e-30, 1.0);
  c.adamw.weight_decay = r.real("weight_decay", c.adamw.weight_decay, 0.0, 10.0);
  c.grad_clip = r.real("grad_clip", c.grad_clip, 0.0, 1e12);
  c.dtype = dtype_from_name(r.choice("dtype", "f32", {"f32", "bf16"}));
  c.validation_fraction = r.real("validation_fraction", c.validation_fraction, 1e-9, 0.5);
  c.bos_first = r.boolean("bos_first", c.bos_first);
  c.log_every = r.integer("log_every", c.log_every, 1, kMany);
  c.eval_every = r.integer("eval_every", c.eval_every, 0, kMany);
  c.eval_batches = r.integer("eval_batches", c.eval_batches, 1, kMany);
  c.checkpoint_every = r.integer("checkpoint_every", c.checkpoint_every, 0, kMany);
  c.keep_checkpoints = r.integer("keep_checkpoints", c.keep_checkpoints, 1, 1000);
  c.max_bad_steps = r.integer("max_bad_steps", c.max_bad_steps, 1, kMany);
  c.sample_tokens = r.integer("sample_tokens", c.sample_tokens, 0, 1 << 16);
  c.sample_temperature = r.real("sample_temperature", c.sample_temperature, 0.0, 100.0);
  if (c.batch_size % c.micro_batch_size != 0) {
    r.problem(fmt::format("'batch_size' ({}) must be a multiple of 'micro_batch_size' ({})",
                          c.batch_size, c.micro_batch_size));
  }
  if (c.end_lr > c.lr) {
    r.problem(fmt::format("'end_lr' ({}) must not exceed 'lr' ({})", c.end_lr, c.lr));
  }
  r.finish();
  return c;
}

namespace {

nlohmann::json parse_file(const std::string& path) {
  std::ifstream in(path);
  DSSM_CHECK(in.good(), "config", "cannot open '{}'", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("config", "'{}' is not valid JSON: {}", path, e.what());
  }
}

}  // namespace

nlohmann::json load_config_json(const std::string& path) {
  nlohmann::json config = parse_file(path);
  if (config.is_object() && config.contains("arch")) return {{"model", config}};
  if (config.is_object() && config.contains("model") && config["model"].is_string()) {
    const std::filesystem::path model_path =
        std::filesystem::path(path).parent_path() / config["model"].get<std::string>();
    config["model"] = parse_file(model_path.string());
  }
  return config;
}

void apply_override(nlohmann::json& config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  DSSM_CHECK(eq != std::string::npos && eq > 0, "--set", "expected key=value, got '{}'",
             assignment);
  std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  if (key.find('.') == std::string::npos) key = "train." + key;
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  nlohmann::json* node = &config;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot - start);
    DSSM_CHECK(!part.empty(), "--set", "empty component in key '{}'", key);
    DSSM_CHECK(node->is_object() || node->is_null(), "--set",
               "'{}' does not name an object's field", key);
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    node = &(*node)[part];
    start = dot + 1;
  }
}

RunConfig read_run_config(const nlohmann::json& config) {
  DSSM_CHECK(config.is_object(), "config",
             "expected a JSON object with 'model' and 'train', got {}", config.type_name());
  std::vector<std::string> problems;
  for (const auto& [key, _] : config.items()) {
    if (key != "model" && key != "train") {
      problems.push_back(fmt::format("config: unknown key '{}' (known: model, train)", key));
    }
  }
  RunConfig run;
  if (config.contains("model")) {
    run.model = config["model"];
  } else {
    problems.push_back("config: 'model' is required (the model's config object)");
  }
  try {
    run.train = read_train_config(config.value("train", nlohmann::json::object()));
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  if (!problems.empty()) throw Error(fmt::format("{}", fmt::join(problems, "\n")));
  return run;
}

Run build_run(const nlohmann::json& config) {
  std::vector<std::string> problems;
  Run run;
  try {
    run.config = read_run_config(config);
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  try {
    // The model's own problems, even when the train section has some too.
    const nlohmann::json model =
        config.is_object() ? config.value("model", nlohmann::json()) : nlohmann::json();
    run.model = models::make_model(model, run.config.train.seed);
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  if (!problems.empty()) throw Error(fmt::format("{}", fmt::join(problems, "\n")));
  return run;
}

}  // namespace dssm::train
