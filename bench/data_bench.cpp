// Data pipeline benchmarks:
//   1. preparation throughput: raw text tokenized and written as shards, in MB of raw text per
//      CPU-second (= per core) with one thread, and in wall-clock MB/s with all threads;
//   2. sampler throughput: training windows drawn from a memory-mapped shard, in tokens per
//      second and microseconds per window.
// usage: data_bench [CORPUS.jsonl TOKENIZER.model]
//        (defaults: data/linux-doc/corpus.jsonl and data/linux-doc/tokenizer.model, made by
//        tools/prepare_corpus.sh)
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
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

void bench_preparation(const std::string& corpus, const std::string& model, const fs::path& tmp) {
  const double megabytes = static_cast<double>(fs::file_size(corpus)) / 1e6;
  fmt::print("preparation of {} ({:.1f} MB) with {}\n", corpus, megabytes, model);
  for (const int threads : {1, omp_get_max_threads()}) {
    const double wall = now(), cpu = cpu_seconds();
    const PrepareSummary s = prepare_dataset({.inputs = {corpus},
                                              .tokenizer_model = model,
                                              .out_dir = (tmp / "prepare").string(),
                                              .threads = threads,
                                              .overwrite = true});
    const double wall_s = now() - wall, cpu_s = cpu_seconds() - cpu;
    fmt::print("  threads {:>2}: {:>9} tokens  {:6.2f} MB/s wall  {:6.2f} MB per CPU-second\n",
               threads, s.tokens, megabytes / wall_s, megabytes / cpu_s);
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
  const fs::path tmp = fs::temp_directory_path() / "dssm_data_bench";
  fs::create_directories(tmp);
  try {
    bench_sampler(tmp);
    if (fs::exists(corpus) && fs::exists(model)) {
      bench_preparation(corpus, model, tmp);
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
