#include "train/data/tokenizer.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>

#include "tensor/error.hpp"
#include "train/data/raw_documents.hpp"

#if DSSM_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace dssm::data {

#if DSSM_WITH_SENTENCEPIECE

Tokenizer::Tokenizer(const std::string& model_path)
    : path_(model_path), processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->Load(model_path);
  check(status.ok(), model_path, "cannot load the sentencepiece model: {}", status.ToString());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  check(status.ok(), path_, "encode failed: {}", status.ToString());
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  check(status.ok(), path_, "decode failed: {}", status.ToString());
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return processor_->GetPieceSize();
}
int32_t Tokenizer::bos_id() const {
  return processor_->bos_id();
}
int32_t Tokenizer::eos_id() const {
  return processor_->eos_id();
}

namespace {

// Hands sentencepiece's trainer the non-empty lines of every document, one at a time.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& inputs) : reader_(inputs) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    while (true) {
      if (rest_.empty()) {
        if (!reader_.next(document_)) {
          done_ = true;
          return;
        }
        rest_ = document_.text;
      }
      const size_t end = std::min(rest_.find('\n'), rest_.size());
      line_.assign(rest_.substr(0, end));
      rest_.remove_prefix(std::min(end + 1, rest_.size()));
      if (!line_.empty()) return;
    }
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  RawDocumentReader reader_;
  RawDocument document_;
  std::string_view rest_;  // the unread part of document_.text
  std::string line_;
  bool done_ = false;
};

}  // namespace

void train_tokenizer(const TokenizerTrainOptions& o) {
  check(o.vocab_size > 259, "tokenizer train",
        "vocab size {}, expected > 259 (3 specials and 256 byte pieces)", o.vocab_size);
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  const std::string args = fmt::format(
      "--model_prefix={} --vocab_size={} --model_type={} --input_sentence_size={} "
      "--shuffle_input_sentence=true --num_threads={} --unk_id=0 --bos_id=1 --eos_id=2 "
      "--pad_id=-1 --normalization_rule_name=identity --remove_extra_whitespaces=false "
      "--split_digits=true --byte_fallback=true --character_coverage=0.9995 "
      "--max_sentence_length=16384 --hard_vocab_limit=false --minloglevel=1",
      o.model_prefix, o.vocab_size, o.model_type, o.max_sentences, threads);
  LineIterator lines(o.inputs);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines);
  check(status.ok(), "tokenizer train", "sentencepiece failed: {}", status.ToString());
}

#else

}  // namespace dssm::data

namespace sentencepiece {
class SentencePieceProcessor {};  // stands in for the missing library's type
}  // namespace sentencepiece

namespace dssm::data {
namespace {
[[noreturn]] void no_sentencepiece(std::string_view where) {
  fail(where, "built without sentencepiece: install libsentencepiece-dev and re-run cmake");
}
}  // namespace

Tokenizer::Tokenizer(const std::string& model_path) : path_(model_path) {
  no_sentencepiece(model_path);
}
std::vector<int32_t> Tokenizer::encode(std::string_view) const {
  no_sentencepiece(path_);
}
std::string Tokenizer::decode(std::span<const int32_t>) const {
  no_sentencepiece(path_);
}
int32_t Tokenizer::vocab_size() const {
  no_sentencepiece(path_);
}
int32_t Tokenizer::bos_id() const {
  no_sentencepiece(path_);
}
int32_t Tokenizer::eos_id() const {
  no_sentencepiece(path_);
}
void train_tokenizer(const TokenizerTrainOptions&) {
  no_sentencepiece("tokenizer train");
}

#endif

Tokenizer::~Tokenizer() = default;

}  // namespace dssm::data
