// The training loop end to end on the in-repo corpus: gradient accumulation, bit-exact resume,
// atomic checkpoints, the NaN guard, Ctrl-C, and the errors a user can run into.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "models/checkpoint.hpp"
#include "nn/safetensors.hpp"
#include "test_train_helpers.hpp"
#include "train/accumulate.hpp"
#include "train/checkpoint.hpp"
#include "train/interrupt.hpp"
#include "train/trainer.hpp"

using namespace dssm;
using namespace dssm::train;
using dssm::test::TrainScratch;

namespace {

nlohmann::json run_config(const nlohmann::json& model, int64_t steps) {
  return {{"model", model}, {"train", test::tiny_train(steps)}};
}

TrainOptions options(const nlohmann::json& config, const std::string& shard,
                     const std::string& out) {
  TrainOptions o;
  o.config = config;
  o.data = {shard};
  o.out_dir = out;
  o.quiet = true;
  return o;
}

std::vector<nlohmann::json> read_metrics(const std::string& out) {
  std::ifstream in(out + "/metrics.jsonl");
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a dssm::Error");
  return "";
}

}  // namespace

TEST_CASE("accumulating k micro-batches equals one batch k times larger (f64)", "[train]") {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int32_t> token(0, test::kByteVocab - 1);
  for (const auto& arch : {test::tiny_densretnet(), test::tiny_densemamba()}) {
    INFO(arch["arch"]);
    auto model = models::make_model(arch, 3);
    model->to(DType::f64);
    MasterWeights weights(*model, DType::f64);
    const int64_t rows = 4, L = 16;
    std::vector<int32_t> ids(static_cast<size_t>(rows * (L + 1)));
    for (auto& t : ids) t = token(rng);
    const auto rows_of = [&](int64_t first, int64_t count) {
      return make_batch(std::vector<int32_t>(ids.begin() + first * (L + 1),
                                             ids.begin() + (first + count) * (L + 1)),
                        count, L, Device::cpu());
    };
    const auto gradients = [&](const std::vector<Batch>& batches, double& loss) {
      weights.zero_grad();
      loss = accumulate_gradients(*model, weights, batches);
      std::vector<std::vector<double>> out;
      for (const auto& p : weights.parameters()) out.push_back(p.tensor.grad().to_vector<double>());
      return out;
    };
    double loss_one = 0, loss_two = 0, loss_four = 0;
    const auto one = gradients({rows_of(0, 4)}, loss_one);
    const auto two = gradients({rows_of(0, 2), rows_of(2, 2)}, loss_two);
    const auto four =
        gradients({rows_of(0, 1), rows_of(1, 1), rows_of(2, 1), rows_of(3, 1)}, loss_four);
    CHECK(loss_two == Approx(loss_one).epsilon(1e-13));
    CHECK(loss_four == Approx(loss_one).epsilon(1e-13));
    double largest = 0, worst = 0;
    for (size_t p = 0; p < one.size(); ++p) {
      for (size_t i = 0; i < one[p].size(); ++i) {
        largest = std::max(largest, std::abs(one[p][i]));
        worst =
            std::max({worst, std::abs(one[p][i] - two[p][i]), std::abs(one[p][i] - four[p][i])});
      }
    }
    CHECK(largest > 0);
    CHECK(worst <= 1e-12 * largest);
  }
}

TEST_CASE("resuming on the CPU continues bit for bit", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  nlohmann::json model = test::tiny_densretnet();
  model["dropout"] = 0.1;  // the dropout generator must resume too
  nlohmann::json config = run_config(model, 6);
  config["train"]["eval_every"] = 3;

  const TrainSummary whole = train::train(options(config, shard, dir / "whole"));
  REQUIRE(whole.losses.size() == 6);

  TrainOptions split = options(config, shard, dir / "split");
  split.stop_after_steps = 3;
  const TrainSummary first = train::train(split);
  CHECK(first.stopped_early);
  CHECK(first.last_step == 3);
  split.stop_after_steps = 0;
  split.resume = true;
  split.config = nullptr;  // the checkpoint's own config
  const TrainSummary second = train::train(split);
  CHECK(second.first_step == 3);

  std::vector<double> joined = first.losses;
  joined.insert(joined.end(), second.losses.begin(), second.losses.end());
  CHECK(joined == whole.losses);  // exactly
  CHECK(second.val_loss == whole.val_loss);

  const auto a = nn::load_safetensors(whole.checkpoint + "/model.safetensors").tensors;
  const auto b = nn::load_safetensors(second.checkpoint + "/model.safetensors").tensors;
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    CHECK(t.to_vector<float>() == b.at(name).to_vector<float>());
  }
  // The metrics file holds each step once, in order, across the two invocations.
  std::vector<int64_t> steps;
  for (const auto& r : read_metrics(dir / "split")) {
    if (r["kind"] == "train") steps.push_back(r["step"].get<int64_t>());
  }
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  CHECK(std::filesystem::exists(dir / "split/loss.svg"));
  CHECK(std::filesystem::canonical(dir / "split/latest") ==
        std::filesystem::canonical(second.checkpoint));
}

TEST_CASE("a checkpoint write that fails midway leaves the previous one loadable", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  const std::string out = dir / "run";
  const TrainSummary done =
      train::train(options(run_config(test::tiny_densretnet(), 2), shard, out));
  REQUIRE(latest_checkpoint(out) == done.checkpoint);

  // The pieces of a later checkpoint, written with the file size limited to 4 KB: the write
  // of model.safetensors fails partway (as on a full disk).
  auto model = models::load_checkpoint(done.checkpoint);
  AdamW optimizer(model->named_parameters(), {});
  load_optimizer_state(optimizer, done.checkpoint);
  TrainerState state = read_trainer_state(done.checkpoint);
  state.step = 3;
  rlimit saved_limit{};
  getrlimit(RLIMIT_FSIZE, &saved_limit);
  rlimit small = saved_limit;
  small.rlim_cur = 4096;
  const auto previous_handler = signal(SIGXFSZ, SIG_IGN);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string message = error_of([&] {
    save_training_checkpoint(
        out, state, optimizer, [&](const std::string& d) { models::save_checkpoint(d, *model); },
        2);
  });
  setrlimit(RLIMIT_FSIZE, &saved_limit);
  signal(SIGXFSZ, previous_handler);
  CHECK_THAT(message, Catch::Contains("writing step 3"));
  CHECK_THAT(message, Catch::Contains("earlier checkpoints are intact"));

  // What a process killed midway leaves: a partial directory, and a step directory without its
  // trainer state. Neither counts as a checkpoint.
  std::filesystem::create_directories(out + "/checkpoints/.partial-step-00000009");
  std::ofstream(out + "/checkpoints/.partial-step-00000009/model.safetensors") << "torn";
  std::filesystem::create_directories(out + "/checkpoints/step-00000010");
  CHECK(latest_checkpoint(out) == done.checkpoint);
  CHECK(list_checkpoints(out).size() == 1);

  // The previous checkpoint loads and the run resumes from it.
  CHECK(read_trainer_state(done.checkpoint).step == 2);
  TrainOptions resume = options(nullptr, shard, out);
  resume.resume = true;
  resume.overrides = {"steps=4"};
  const TrainSummary resumed = train::train(resume);
  CHECK(resumed.first_step == 2);
  CHECK(resumed.last_step == 4);
  CHECK_FALSE(std::filesystem::exists(out + "/checkpoints/.partial-step-00000009"));
}

TEST_CASE("the NaN guard skips non-finite steps and stops naming the step", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  const std::string out = dir / "run";
  const TrainSummary done =
      train::train(options(run_config(test::tiny_densretnet(), 2), shard, out));
  // Poison one weight of the checkpoint: every later loss is NaN.
  const std::string weights = done.checkpoint + "/model.safetensors";
  nn::SafetensorsContents file = nn::load_safetensors(weights);
  file.tensors.at("norm.weight").fill_(NAN);
  nn::save_safetensors(weights, file.tensors, file.metadata);

  TrainOptions resume = options(nullptr, shard, out);
  resume.resume = true;
  resume.overrides = {"steps=10", "max_bad_steps=3"};
  const std::string message = error_of([&] { train::train(resume); });
  CHECK_THAT(message, Catch::Contains("stopping at step 5"));
  CHECK_THAT(message, Catch::Contains("3 steps in a row"));
  std::vector<int64_t> skipped;
  for (const auto& r : read_metrics(out)) {
    if (r["kind"] == "skip") {
      skipped.push_back(r["step"].get<int64_t>());
      CHECK(r["loss"] == "nan");
    }
  }
  CHECK(skipped == std::vector<int64_t>{3, 4, 5});
  CHECK(latest_checkpoint(out) == done.checkpoint);  // nothing written after the bad steps
}

TEST_CASE("Ctrl-C finishes the step, writes a checkpoint and returns", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  const std::string out = dir / "run";
  std::atomic<bool> done = false;
  std::thread interrupter([&] {
    // After two steps are logged, as a user pressing Ctrl-C.
    for (int i = 0; i < 6000 && !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (read_metrics(out).size() >= 2) {
        kill(getpid(), SIGINT);
        return;
      }
    }
  });
  const TrainSummary summary =
      train::train(options(run_config(test::tiny_densretnet(), 100000), shard, out));
  done = true;
  interrupter.join();
  CHECK(summary.stopped_early);
  CHECK(StopRequestGuard::requested());
  CHECK(summary.last_step >= 2);
  CHECK(summary.last_step < 100000);
  CHECK(read_trainer_state(latest_checkpoint(out)).step == summary.last_step);
}

TEST_CASE("bad configs list every problem at once", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  nlohmann::json model = test::tiny_densretnet();
  model["colour"] = "red";
  model["vocab_size"] = 0;
  nlohmann::json config = {
      {"model", model},
      {"train", {{"lr", -1}, {"schedule", "linear"}, {"batchsize", 4}, {"dtype", "f16"}}},
      {"extra", 1}};
  const std::string message = error_of([&] { train::train(options(config, shard, dir / "o")); });
  CHECK_THAT(message, Catch::Contains("unknown key 'extra' (known: model, train)"));
  CHECK_THAT(message, Catch::Contains("'lr' must be in"));
  CHECK_THAT(message, Catch::Contains("'schedule' must be one of \"polynomial\", \"cosine\""));
  CHECK_THAT(message, Catch::Contains("'dtype' must be one of \"f32\", \"bf16\""));
  CHECK_THAT(message, Catch::Contains("unknown key 'batchsize'"));
  CHECK_THAT(message, Catch::Contains("unknown key 'colour'"));
  CHECK_THAT(message, Catch::Contains("'vocab_size'"));

  config = run_config(test::tiny_densretnet(), 4);
  config["train"]["micro_batch_size"] = 3;
  CHECK_THAT(error_of([&] { train::train(options(config, shard, dir / "o")); }),
             Catch::Contains("'batch_size' (8) must be a multiple of 'micro_batch_size' (3)"));
  TrainOptions bad_set = options(run_config(test::tiny_densretnet(), 4), shard, dir / "o");
  bad_set.overrides = {"lr"};
  CHECK_THAT(error_of([&] { train::train(bad_set); }), Catch::Contains("expected key=value"));
}

TEST_CASE("an output dir of another run is refused unless --resume or --force", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  const std::string out = dir / "run";
  const nlohmann::json config = run_config(test::tiny_densretnet(), 1);
  train::train(options(config, shard, out));

  nlohmann::json other = config;
  other["train"]["lr"] = 1e-3;
  std::string message = error_of([&] { train::train(options(other, shard, out)); });
  CHECK_THAT(message, Catch::Contains("a run with another config"));
  CHECK_THAT(message, Catch::Contains("train.lr: 0.003 -> 0.001"));
  CHECK_THAT(message, Catch::Contains("--resume"));
  CHECK_THAT(message, Catch::Contains("--force"));
  CHECK_THAT(error_of([&] { train::train(options(config, shard, out)); }),
             Catch::Contains("a run with this config"));

  TrainOptions resume = options(nullptr, shard, out);
  resume.resume = true;
  resume.overrides = {"model.n_layers=3"};
  CHECK_THAT(error_of([&] { train::train(resume); }), Catch::Contains("model.n_layers: 2 -> 3"));

  TrainOptions force = options(other, shard, out);
  force.force = true;
  const TrainSummary fresh = train::train(force);
  CHECK(fresh.first_step == 0);
  CHECK(read_trainer_state(fresh.checkpoint).run_config["train"]["lr"] == 1e-3);
  CHECK(list_checkpoints(out).size() == 1);
}

TEST_CASE("token ids beyond the model's vocabulary are refused naming the file", "[train]") {
  TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  nlohmann::json model = test::tiny_densretnet();
  model["vocab_size"] = 100;  // bytes reach id 258
  const std::string message =
      error_of([&] { train::train(options(run_config(model, 1), shard, dir / "o")); });
  CHECK_THAT(message, Catch::Contains("corpus.tok"));
  CHECK_THAT(message, Catch::Contains("100"));
}
