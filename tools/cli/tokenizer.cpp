// dssm tokenizer train --input FILES... --vocab-size 32000 --model-type bpe --out PREFIX
// dssm tokenizer encode --model X.model TEXT
// Trains or applies a sentencepiece model (train/data/tokenizer.hpp).
#include <fmt/format.h>

#include <chrono>

#include "tools/cli/commands.hpp"
#include "train/data/tokenizer.hpp"

namespace dssm::cli {
namespace {

using namespace dssm::data;

void add_train(CLI::App& tokenizer) {
  auto o = std::make_shared<TokenizerTrainOptions>();
  CLI::App* cmd = tokenizer.add_subcommand("train", "Train a sentencepiece model on local text");
  cmd->add_option("--input", o->inputs, "Files or globs (.jsonl, .jsonl.zst, .txt)")->required();
  cmd->add_option("--out", o->model_prefix, "Writes OUT.model and OUT.vocab")->required();
  cmd->add_option("--vocab-size", o->vocab_size, "Vocabulary size")->capture_default_str();
  cmd->add_option("--model-type", o->model_type, "bpe, unigram, char or word")
      ->capture_default_str();
  cmd->add_option("--max-sentences", o->max_sentences, "Lines sampled for training (0: all)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0: all cores)");
  cmd->callback([o]() {
    const auto start = std::chrono::steady_clock::now();
    fmt::print(stderr, "training a {} tokenizer, vocabulary {}, on {} input(s)...\n", o->model_type,
               o->vocab_size, o->inputs.size());
    train_tokenizer(*o);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("wrote {}.model and {}.vocab in {:.1f} s\n", o->model_prefix, o->model_prefix,
               seconds);
  });
}

void add_encode(CLI::App& tokenizer) {
  struct Options {
    std::string model, text;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = tokenizer.add_subcommand("encode", "Print the token ids of a text");
  cmd->add_option("--model", o->model, "sentencepiece .model")->required();
  cmd->add_option("text", o->text, "The text")->required();
  cmd->callback([o]() {
    const Tokenizer tokenizer(o->model);
    fmt::print("{}\n", fmt::join(tokenizer.encode(o->text), " "));
  });
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  CLI::App* tokenizer = app.add_subcommand("tokenizer", "Train or apply a sentencepiece model");
  tokenizer->require_subcommand(1);
  add_train(*tokenizer);
  add_encode(*tokenizer);
}

}  // namespace dssm::cli
