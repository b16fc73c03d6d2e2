// Data pipeline benchmarks:
//   1. preparation throughput: raw text tokenized and written as shards, with 1 and 2 threads, in
//      MB of raw text per CPU-second of the process (= per core, robust to other load) and per
//      wall-clock second; each the median of REPEATS runs (default 3);
//   2. sampler throughput: training windows drawn from a memory-mapped shard, in tokens per
//      second and microseconds per window.
// usage: data_bench [CORPUS.jsonl TOKENIZER.model [REPEATS]]
//        (defaults: data/linux-doc/corpus.jsonl and data/linux-doc/tokenizer.model, made by
//        tools/prepare_corpus.sh)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>

#include "train/data/prepare.hpp"
#include "train/data/window_sampler.hpp"

namespace fs = std::filesystem;
using namespace dssm::data;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_seconds() {  // of the whole process, all threads
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// One preparation of `corpus` with `threads` threads: raw MB per process CPU-second (robust to
// other load on the machine) and per wall-clock second.
struct Throughput {
  double per_cpu_second, per_wall_second;
  int64_t tokens;
};

Throughput prepare_once(const std::string& corpus, const std::string& model, const fs::path& tmp,
                        int threads) {
  const double megabytes = static_cast<double>(fs::file_size(corpus)) / 1e6;
  const double wall = now(), cpu = cpu_seconds();
  const PrepareSummary s = prepare_dataset({.inputs = {corpus},
                                            .tokenizer_model = model,
                                            .out_dir = (tmp / "prepare").string(),
                                            .threads = threads,
                                            .overwrite = true});
  return {megabytes / (cpu_seconds() - cpu), megabytes / (now() - wall), s.tokens};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void bench_preparation(const std::string& corpus, const std::string& model, const fs::path& tmp,
                       int repeats) {
  fmt::print("preparation of {} ({:.1f} MB) with {}, {} runs each (median, min - max)\n", corpus,
             static_cast<double>(fs::file_size(corpus)) / 1e6, model, repeats);
  for (const int threads : {1, 2}) {
    std::vector<double> cpu, wall;
    int64_t tokens = 0;
    for (int r = 0; r < repeats; ++r) {
      const Throughput t = prepare_once(corpus, model, tmp, threads);
      cpu.push_back(t.per_cpu_second);
      wall.push_back(t.per_wall_second);
      tokens = t.tokens;
    }
    fmt::print(
        "  threads {}: {} tokens  {:.2f} ({:.2f} - {:.2f}) MB per CPU-second  "
        "{:.2f} ({:.2f} - {:.2f}) MB/s wall\n",
        threads, tokens, median(cpu), *std::min_element(cpu.begin(), cpu.end()),
        *std::max_element(cpu.begin(), cpu.end()), median(wall),
        *std::min_element(wall.begin(), wall.end()), *std::max_element(wall.begin(), wall.end()));
  }
}

void bench_sampler(const fs::path& tmp) {
  const int64_t tokens = 50'000'000, seq_len = 2048, batch = 8;
  const std::string path = (tmp / "sampler.tok").string();
  {
    std::mt19937 rng(0);
    auto writer = make_shard_writer(ShardFormat::flat, path, TokenType::u16);
    std::vector<int32_t> document(5000);
    for (int64_t written = 0; written < tokens; written += 5000) {
      for (auto& t : document) t = static_cast<int32_t>(rng() % 32000);
      writer->add_document(document);
    }
    writer->commit();
  }
  const double open_start = now();
  const TokenDataset data = TokenDataset::open({path}, {.vocab_size = 32000});
  const double open_s = now() - open_start;
  WindowSampler sampler(data, {.seq_len = seq_len, .seed = 1});
  std::vector<int32_t> out(static_cast<size_t>(batch * (seq_len + 1)));
  const int64_t batches = 2000;
  const double start = now();
  for (int64_t b = 0; b < batches; ++b) sampler.next_batch(batch, out.data());
  const double seconds = now() - start;
  const double windows = static_cast<double>(batches * batch);
  fmt::print("sampler over {}M uint16 tokens (opened and vocabulary-checked in {:.0f} ms):\n",
             tokens / 1'000'000, 1e3 * open_s);
  fmt::print("  seq_len {} batch {}: {:.1f} M tokens/s, {:.1f} us per window\n", seq_len, batch,
             windows * (seq_len + 1) / seconds / 1e6, 1e6 * seconds / windows);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string corpus = argc > 2 ? argv[1] : "data/linux-doc/corpus.jsonl";
  const std::string model = argc > 2 ? argv[2] : "data/linux-doc/tokenizer.model";
  const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  const fs::path tmp = fs::temp_directory_path() / "dssm_data_bench";
  fs::create_directories(tmp);
  try {
    bench_sampler(tmp);
    if (fs::exists(corpus) && fs::exists(model)) {
      bench_preparation(corpus, model, tmp, repeats);
    } else {
      fmt::print("no {} or {}: run tools/prepare_corpus.sh for the preparation benchmark\n", corpus,
                 model);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    fs::remove_all(tmp);
    return 1;
  }
  fs::remove_all(tmp);
  return 0;
}
