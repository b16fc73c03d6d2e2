#include "train/trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "cuda/backend.hpp"
#include "models/checkpoint.hpp"
#include "tensor/error.hpp"
#include "train/accumulate.hpp"
#include "train/checkpoint.hpp"
#include "train/clip.hpp"
#include "train/config.hpp"
#include "train/data/token_dataset.hpp"
#include "train/data/tokenizer.hpp"
#include "train/data/window_sampler.hpp"
#include "train/evaluate.hpp"
#include "train/flops.hpp"
#include "train/interrupt.hpp"
#include "train/metrics.hpp"
#include "train/plot.hpp"
#include "train/sample.hpp"

namespace dssm::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- the run's config and its output directory --------------------------------------------

// "model.n_layers: 4 -> 6" for every value that differs between a and b.
void diff_json(const nlohmann::json& a, const nlohmann::json& b, const std::string& path,
               std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, _] : a.items()) keys.insert(k);
    for (const auto& [k, _] : b.items()) keys.insert(k);
    for (const auto& k : keys) {
      diff_json(a.value(k, nlohmann::json()), b.value(k, nlohmann::json()), path + "." + k, out);
    }
  } else if (a != b) {
    out.push_back(fmt::format("{}: {} -> {}", path.substr(1), a.dump(), b.dump()));
  }
}

// The config with every training setting spelled out (defaults included), so that two configs
// compare equal when they mean the same run. Left as is when it does not read.
nlohmann::json normalized(const nlohmann::json& config) {
  try {
    return read_run_config(config).to_json();
  } catch (const Error&) {
    return config;
  }
}

struct Start {
  nlohmann::json config;   // overrides applied
  std::string checkpoint;  // the one to resume, "" for a fresh run
};

Start prepare_output_dir(const TrainOptions& o) {
  const std::string existing = latest_checkpoint(o.out_dir);
  if (o.resume) {
    DSSM_CHECK(!existing.empty(), "train", "--resume: no checkpoint in '{}' to continue",
               (fs::path(o.out_dir) / "checkpoints").string());
    const TrainerState saved = read_trainer_state(existing);
    nlohmann::json config = o.config.is_null() ? saved.run_config : o.config;
    for (const auto& assignment : o.overrides) apply_override(config, assignment);
    config = normalized(config);
    std::vector<std::string> model_changes, train_changes;
    diff_json(saved.run_config.value("model", nlohmann::json()),
              config.value("model", nlohmann::json()), ".model", model_changes);
    DSSM_CHECK(model_changes.empty(), "train",
               "--resume: the model config differs from the checkpoint's ({}):\n  {}", existing,
               fmt::join(model_changes, "\n  "));
    diff_json(saved.run_config.value("train", nlohmann::json()),
              config.value("train", nlohmann::json()), ".train", train_changes);
    if (!train_changes.empty() && !o.quiet) {
      fmt::print("resuming with changed training settings:\n  {}\n",
                 fmt::join(train_changes, "\n  "));
    }
    return {config, existing};
  }
  DSSM_CHECK(!o.config.is_null(), "train", "a config is required (--config FILE) unless --resume");
  nlohmann::json config = o.config;
  for (const auto& assignment : o.overrides) apply_override(config, assignment);
  config = normalized(config);
  if (!existing.empty()) {
    if (!o.force) {
      std::vector<std::string> changes;
      diff_json(read_trainer_state(existing).run_config, config, "", changes);
      fail("train",
           "'{}' already holds checkpoints of {} (newest: {}). Pass --resume to continue it or "
           "--force to delete them and start afresh.{}",
           o.out_dir, changes.empty() ? "a run with this config" : "a run with another config",
           existing,
           changes.empty()
               ? ""
               : "\nIts config differs in:\n  " + fmt::format("{}", fmt::join(changes, "\n  ")));
    }
    std::error_code ec;
    fs::remove_all(fs::path(o.out_dir) / "checkpoints", ec);
    fs::remove(fs::path(o.out_dir) / "metrics.jsonl", ec);
    fs::remove(fs::path(o.out_dir) / "loss.svg", ec);
    fs::remove(fs::path(o.out_dir) / "latest", ec);
  }
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  DSSM_CHECK(!ec, "train", "cannot create the output directory '{}': {}", o.out_dir, ec.message());
  return {config, ""};
}

// ---- numbers for the progress line ---------------------------------------------------------

std::string duration_str(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, s / 60 % 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string count_str(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

}  // namespace

TrainSummary train(const TrainOptions& o) {
  // ---- set-up: config, model, data, optimizer, and the state of a resumed run ---------------
  const Start start = prepare_output_dir(o);
  Run run = build_run(start.config);
  const TrainConfig& cfg = run.config.train;
  models::LanguageModel& model = *run.model;

  // Every token id is checked against the model's vocabulary as the shards open.
  const data::TokenDataset dataset =
      data::TokenDataset::open(o.data, {.vocab_size = model.config().vocab_size});
  data::SamplerOptions sampling{.seq_len = cfg.seq_len,
                                .seed = cfg.seed,
                                .split = data::Split::train,
                                .validation_fraction = cfg.validation_fraction,
                                .bos_first = cfg.bos_first};
  data::WindowSampler train_windows(dataset, sampling);
  sampling.split = data::Split::validation;
  const data::WindowSampler val_windows(dataset, sampling);

  TrainerState state{.run_config = run.config.to_json()};
  if (!start.checkpoint.empty()) {
    const TrainerState saved = read_trainer_state(start.checkpoint);
    models::load_weights(model, (fs::path(start.checkpoint) / "model.safetensors").string());
    model.dropout_generator().set_state(saved.dropout_seed, saved.dropout_offset);
    train_windows.restore(data::cursor_from_json(saved.data_cursor));
    state.step = saved.step;
    state.tokens_seen = saved.tokens_seen;
    state.elapsed_s = saved.elapsed_s;
    state.bad_steps_in_row = saved.bad_steps_in_row;
  }
  if (o.device.is_cuda()) cuda::require_device(o.device.index);
  model.to(o.device);
  MasterWeights weights(model, cfg.dtype);  // bf16: the model turns bf16, masters stay f32
  AdamW optimizer(weights.parameters(), cfg.adamw);
  if (!start.checkpoint.empty()) load_optimizer_state(optimizer, start.checkpoint);
  model.train();

  const Schedule schedule = cfg.lr_schedule();
  const int64_t accumulation = cfg.grad_accum_steps();
  const std::string title =
      fmt::format("{} ({} parameters), {}", model.config().arch,
                  count_str(static_cast<double>(model.num_parameters())), o.out_dir);
  MetricsLog metrics((fs::path(o.out_dir) / "metrics.jsonl").string(),
                     start.checkpoint.empty() ? -1 : state.step);
  const std::string plot_path = (fs::path(o.out_dir) / "loss.svg").string();
  std::unique_ptr<data::Tokenizer> tokenizer;
  if (!o.tokenizer.empty() && cfg.sample_tokens > 0) {
    tokenizer = std::make_unique<data::Tokenizer>(o.tokenizer);
  }
  StopRequestGuard stop_request;  // Ctrl-C: finish the step, checkpoint, return

  if (!o.quiet) {
    fmt::print(
        "{}: {} parameters | {} steps of {} x {} tokens (micro-batch {}, accumulation {}) | "
        "{} {} | warm-up {} steps, {} decay to {:g}\n"
        "data: {} tokens; {} training windows per epoch, {} validation windows\n",
        model.config().arch, count_str(static_cast<double>(model.num_parameters())), cfg.steps,
        cfg.batch_size, cfg.seq_len, cfg.micro_batch_size, accumulation, o.device.str(),
        dtype_name(cfg.dtype), schedule.warmup_steps, cfg.schedule, cfg.end_lr,
        count_str(static_cast<double>(dataset.num_tokens())), train_windows.windows_per_epoch(),
        val_windows.windows_per_epoch());
    if (!start.checkpoint.empty()) fmt::print("resumed from {}\n", start.checkpoint);
  }

  TrainSummary summary{.first_step = state.step, .val_loss = NAN};

  const auto evaluate_and_sample = [&] {
    const EvalResult r = evaluate(model, val_windows, cfg.eval_batches * cfg.micro_batch_size,
                                  cfg.micro_batch_size, o.device);
    summary.val_loss = r.loss;
    metrics.write({{"kind", "eval"},
                   {"step", state.step},
                   {"loss", json_number(r.loss)},
                   {"perplexity", json_number(r.perplexity)},
                   {"tokens", r.tokens}});
    if (o.quiet) return;
    fmt::print("eval  step {:>6} | val loss {:.4f} | perplexity {:.2f} | {} tokens\n", state.step,
               r.loss, r.perplexity, r.tokens);
    if (!tokenizer) return;
    std::vector<int32_t> prompt = {tokenizer->bos_id()};
    for (int32_t id : tokenizer->encode(cfg.sample_prompt)) prompt.push_back(id);
    Generator gen(cfg.seed + static_cast<uint64_t>(state.step));  // apart from training's RNG
    const std::vector<int32_t> tokens =
        sample_continuation(model, prompt, cfg.sample_tokens, cfg.sample_temperature, gen);
    std::vector<int32_t> text(prompt.begin() + 1, prompt.end());  // without <bos>
    text.insert(text.end(), tokens.begin(), tokens.end());
    fmt::print("sample: {}\n", tokenizer->decode(text));
  };

  const auto save_checkpoint = [&] {
    state.data_cursor = data::to_json(train_windows.cursor());
    state.dropout_seed = model.dropout_generator().seed();
    state.dropout_offset = model.dropout_generator().offset();
    state.lr_schedule = {{"kind", cfg.schedule},
                         {"lr", schedule.lr},
                         {"end_lr", schedule.end_lr},
                         {"power", schedule.power},
                         {"warmup_steps", schedule.warmup_steps},
                         {"total_steps", schedule.total_steps},
                         {"next_lr", learning_rate(schedule, state.step)}};
    weights.with_f32_model([&] {
      summary.checkpoint = save_training_checkpoint(
          o.out_dir, state, optimizer,
          [&](const std::string& dir) { models::save_checkpoint(dir, model); },
          cfg.keep_checkpoints);
    });
    write_loss_curve(plot_path, metrics.records(), title);
    if (!o.quiet) fmt::print("checkpoint: {}\n", summary.checkpoint);
  };

  // ---- the loop: one optimizer step per iteration ---------------------------------------------
  std::vector<int32_t> windows(static_cast<size_t>(cfg.micro_batch_size * (cfg.seq_len + 1)));
  const double run_start_elapsed = state.elapsed_s;
  double interval_seconds = 0;  // since the last progress line
  int64_t interval_steps = 0;
  while (state.step < cfg.steps) {
    const auto started = Clock::now();
    const double lr = learning_rate(schedule, state.step);

    // Forward and backward over the micro-batches; gradients of their mean loss accumulate.
    std::vector<Batch> micro_batches;
    for (int64_t k = 0; k < accumulation; ++k) {
      train_windows.next_batch(cfg.micro_batch_size, windows.data());
      micro_batches.push_back(make_batch(windows, cfg.micro_batch_size, cfg.seq_len, o.device));
    }
    const double loss = accumulate_gradients(model, weights, micro_batches);
    const double grad_norm = global_grad_norm(weights.tensors());

    // The update, unless the loss or the gradient went non-finite (the NaN guard).
    const bool finite = std::isfinite(loss) && std::isfinite(grad_norm);
    if (finite) {
      optimizer.step(lr, clip_coefficient(grad_norm, cfg.grad_clip));
      weights.copy_to_model();
      state.bad_steps_in_row = 0;
    } else {
      ++state.bad_steps_in_row;
      ++summary.skipped_steps;
    }
    weights.zero_grad();
    if (o.device.is_cuda()) cuda::synchronize();  // so the step's time is all in `seconds`
    ++state.step;

    // Bookkeeping: time, metrics, the progress line.
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    state.elapsed_s += seconds;
    state.tokens_seen += cfg.tokens_per_step();
    interval_seconds += seconds;
    ++interval_steps;
    summary.losses.push_back(loss);
    summary.last_step = state.step;
    const double tokens_per_s = static_cast<double>(cfg.tokens_per_step()) / seconds;
    nlohmann::json record = {{"kind", finite ? "train" : "skip"},   {"step", state.step},
                             {"loss", json_number(loss)},           {"lr", lr},
                             {"grad_norm", json_number(grad_norm)}, {"tokens", state.tokens_seen},
                             {"tokens_per_s", tokens_per_s},        {"elapsed_s", state.elapsed_s}};
    if (o.device.is_cuda()) {
      record["mfu"] = tokens_per_s * flops_per_token(model) / (o.peak_tflops * 1e12);
    }
    if (!finite) record["in_a_row"] = state.bad_steps_in_row;
    metrics.write(record);
    if (!finite) {
      fmt::print(stderr,
                 "step {}: non-finite {} (loss {}, grad norm {}): update skipped ({} in a row)\n",
                 state.step, std::isfinite(loss) ? "gradient norm" : "loss", loss, grad_norm,
                 state.bad_steps_in_row);
      if (state.bad_steps_in_row >= cfg.max_bad_steps) {
        write_loss_curve(plot_path, metrics.records(), title);
        fail("train",
             "stopping at step {}: {} steps in a row had a non-finite loss or gradient norm "
             "(max_bad_steps {}); the last checkpoint is {}",
             state.step, state.bad_steps_in_row, cfg.max_bad_steps,
             summary.checkpoint.empty() ? latest_checkpoint(o.out_dir) : summary.checkpoint);
      }
    }
    if (!o.quiet && (state.step % cfg.log_every == 0 || state.step == summary.first_step + 1 ||
                     state.step == cfg.steps)) {
      const double interval_tps =
          static_cast<double>(cfg.tokens_per_step() * interval_steps) / interval_seconds;
      const double eta = interval_seconds / static_cast<double>(interval_steps) *
                         static_cast<double>(cfg.steps - state.step);
      std::string line =
          fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {} tok/s",
                      state.step, cfg.steps, loss, lr, grad_norm, count_str(interval_tps));
      if (o.device.is_cuda()) {
        line += fmt::format(" | MFU {:.1f}%",
                            100.0 * interval_tps * flops_per_token(model) / (o.peak_tflops * 1e12));
      }
      fmt::print("{} | ETA {}\n", line, duration_str(eta));
      std::fflush(stdout);
      interval_seconds = 0;
      interval_steps = 0;
    }

    // Periodic evaluation and checkpoint (the last step's come after the loop).
    if (state.step == cfg.steps) break;
    if (cfg.eval_every > 0 && state.step % cfg.eval_every == 0) evaluate_and_sample();
    if (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0) save_checkpoint();

    // Stopping early, cleanly: Ctrl-C, the time limit, or a fixed number of steps here.
    const bool out_of_time =
        o.time_limit_s > 0 && state.elapsed_s - run_start_elapsed >= o.time_limit_s;
    const bool enough_steps =
        o.stop_after_steps > 0 && state.step - summary.first_step >= o.stop_after_steps;
    if (StopRequestGuard::requested() || out_of_time || enough_steps) {
      if (!o.quiet) {
        fmt::print("stopping after step {} ({}); `--resume` continues the run\n", state.step,
                   StopRequestGuard::requested() ? "interrupted"
                   : out_of_time                 ? "time limit"
                                                 : "--stop-after-steps");
      }
      save_checkpoint();
      summary.stopped_early = true;
      return summary;
    }
  }

  // ---- the end: a last evaluation, checkpoint and plot ----------------------------------------
  if (summary.first_step < cfg.steps) evaluate_and_sample();
  save_checkpoint();
  if (!o.quiet) {
    fmt::print("done: {} steps in {}, {} tokens | plot: {} | metrics: {}\n", state.step,
               duration_str(state.elapsed_s), count_str(static_cast<double>(state.tokens_seen)),
               plot_path, metrics.path());
  }
  return summary;
}

}  // namespace dssm::train
