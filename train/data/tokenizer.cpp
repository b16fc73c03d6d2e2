#include "train/data/tokenizer.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "tensor/error.hpp"
#include "train/data/protobuf_wire.hpp"
#include "train/data/raw_documents.hpp"
#include "train/data/word_cache.hpp"

#if DSSM_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace dssm::data {

#if DSSM_WITH_SENTENCEPIECE

Tokenizer::Tokenizer(const std::string& model_path)
    : path_(model_path), processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->Load(model_path);
  DSSM_CHECK(status.ok(), model_path, "cannot load the sentencepiece model: {}", status.ToString());
  static std::atomic<uint64_t> instances{0};
  instance_ = ++instances;
  word_cache_ = pieces_allow_word_split() && probes_agree();
}

namespace {

constexpr std::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space

// ModelProto.trainer_spec (field 2).model_type (field 3): 1 unigram (the default), 2 BPE.
bool is_bpe_model(std::string_view model_proto) {
  const auto spec = find_field(model_proto, 2);
  const auto type = spec ? find_field(spec->bytes, 3) : std::nullopt;
  return type && type->value == 2;
}

// The end of the word that starts at `start`: spaces, then everything up to the next space that
// follows a non-space; trailing spaces stay with the last word.
size_t word_end(std::string_view text, size_t start) {
  size_t end = text.find_first_not_of(' ', start);
  end = end == std::string_view::npos ? text.size() : text.find(' ', end);
  if (end == std::string_view::npos || text.find_first_not_of(' ', end) == std::string_view::npos) {
    end = text.size();
  }
  return end;
}

}  // namespace

bool Tokenizer::pieces_allow_word_split() const {
  // Unigram models break ties between equal-scoring segmentations by position: BPE only.
  if (!is_bpe_model(processor_->serialized_model_proto())) return false;
  for (int id = 0; id < processor_->GetPieceSize(); ++id) {
    if (processor_->IsControl(id) || processor_->IsUnknown(id) || processor_->IsByte(id)) continue;
    const std::string piece = processor_->IdToPiece(id);
    const size_t space = piece.find(kMetaSpace, 0);
    if (space == std::string::npos) continue;
    // Spaces may only open a piece: "▁▁word" is fine, "a▁" or "a▁b" is not.
    const size_t first_other = piece.find_first_not_of(kMetaSpace);
    const size_t last_space = piece.rfind(kMetaSpace);
    if (first_other != std::string::npos && last_space > first_other) return false;
  }
  return true;
}

bool Tokenizer::probes_agree() const {
  for (const std::string_view probe :
       {"The quick  brown fox.", "  leading and trailing  ", "a\nb \n c\t d", "x86_64 2024-01-02",
        "naïve café 東京 🙂", "word   ", " ", "tab\tbed  \n\n  new",
        "aaaaaaaa bbbbbb abababab ------ ......", "\xF0\x9F\x98\x80\xE2\x82\xAC"}) {
    if (encode_whole(probe) != encode(probe)) return false;
  }
  return true;
}

std::vector<int32_t> Tokenizer::encode_whole(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  DSSM_CHECK(status.ok(), path_, "encode failed: {}", status.ToString());
  return {ids.begin(), ids.end()};
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (!word_cache_ || text.find(kMetaSpace) != std::string_view::npos) return encode_whole(text);
  thread_local WordCache cache;
  thread_local uint64_t cache_owner = 0;
  if (cache_owner != instance_) {
    cache.clear();
    cache_owner = instance_;
  }
  std::vector<int32_t> ids, fresh;
  ids.reserve(text.size() / 3);
  for (size_t start = 0, end = 0; start < text.size(); start = end) {
    end = word_end(text, start);
    // sentencepiece puts one space (the "dummy prefix") before the text: words after the
    // first bring their own, so it is dropped from them.
    const size_t from = start == 0 ? 0 : start + 1;
    const std::string_view word = text.substr(from, end - from);
    std::span<const int32_t> cached;
    if (!cache.find(word, cached)) {
      fresh.clear();
      encode_word(word, fresh);
      cache.insert(word, fresh);
      cached = fresh;
    }
    ids.insert(ids.end(), cached.begin(), cached.end());
  }
  return ids;
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  const std::vector<int32_t> whole = encode_whole(word);
  ids.insert(ids.end(), whole.begin(), whole.end());
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  DSSM_CHECK(status.ok(), path_, "decode failed: {}", status.ToString());
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
  DSSM_CHECK(o.vocab_size > 259, "tokenizer train",
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
  DSSM_CHECK(status.ok(), "tokenizer train", "sentencepiece failed: {}", status.ToString());
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
