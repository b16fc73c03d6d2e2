#include "train/data/tokenizer.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <unordered_map>

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
  static std::atomic<uint64_t> instances{0};
  instance_ = ++instances;
  word_cache_ = words_are_independent();
}

namespace {

constexpr std::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space

uint64_t read_varint(std::string_view bytes, size_t& at) {
  uint64_t value = 0;
  for (int shift = 0; at < bytes.size() && shift < 64; shift += 7) {
    const auto byte = static_cast<uint8_t>(bytes[at++]);
    value |= uint64_t{byte & 0x7fu} << shift;
    if (byte < 0x80) break;
  }
  return value;
}

// Finds field `field` of the protobuf message `bytes` by scanning the wire format (key = field
// << 3 | wire type): a varint field's value goes to `varint`, a length-delimited one is returned.
std::optional<std::string_view> find_field(std::string_view bytes, uint64_t field,
                                           uint64_t& varint) {
  size_t at = 0;
  while (at < bytes.size()) {
    const uint64_t key = read_varint(bytes, at), type = key & 7;
    if (type == 0) {
      const uint64_t value = read_varint(bytes, at);
      if (key >> 3 == field) return varint = value, std::string_view{};
    } else if (type == 2) {
      const uint64_t length = std::min<uint64_t>(read_varint(bytes, at), bytes.size() - at);
      if (key >> 3 == field) return bytes.substr(at, length);
      at += length;
    } else if (type == 1 || type == 5) {
      at += type == 1 ? 8 : 4;
    } else {
      break;
    }
  }
  return std::nullopt;
}

// ModelProto.trainer_spec (field 2).model_type (field 3): 1 unigram (the default), 2 BPE.
bool is_bpe_model(std::string_view model_proto) {
  uint64_t unused = 0, type = 1;
  const auto spec = find_field(model_proto, 2, unused);
  if (spec) find_field(*spec, 3, type);
  return type == 2;
}

}  // namespace

bool Tokenizer::words_are_independent() const {
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
  for (const std::string_view probe :
       {"The quick  brown fox.", "  leading and trailing  ", "a\nb \n c\t d", "x86_64 2024-01-02",
        "naïve café 東京 🙂", "word   ", " ", "tab\tbed  \n\n  new"}) {
    if (encode_whole(probe) != encode(probe)) return false;
  }
  return true;
}

std::vector<int32_t> Tokenizer::encode_whole(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  check(status.ok(), path_, "encode failed: {}", status.ToString());
  return {ids.begin(), ids.end()};
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (!word_cache_ || text.find(kMetaSpace) != std::string_view::npos) return encode_whole(text);
  thread_local std::unordered_map<std::string, std::vector<int32_t>> cache;
  thread_local uint64_t cache_owner = 0;
  if (cache_owner != instance_ || cache.size() > (size_t{1} << 20)) {
    cache.clear();
    cache_owner = instance_;
  }
  std::vector<int32_t> ids;
  std::string word;
  size_t start = 0;
  while (start < text.size()) {
    // A word: spaces, then everything up to the next space that follows a non-space; trailing
    // spaces stay with the last word.
    size_t end = text.find_first_not_of(' ', start);
    end = end == std::string_view::npos ? text.size() : text.find(' ', end);
    if (end == std::string_view::npos ||
        text.find_first_not_of(' ', end) == std::string_view::npos) {
      end = text.size();
    }
    // sentencepiece puts one space (the "dummy prefix") before the text: words after the
    // first bring their own, so it is dropped from them.
    word.assign(text.substr(start == 0 ? 0 : start + 1, end - (start == 0 ? 0 : start + 1)));
    auto it = cache.find(word);
    if (it == cache.end()) it = cache.emplace(word, encode_whole(word)).first;
    ids.insert(ids.end(), it->second.begin(), it->second.end());
    start = end;
  }
  return ids;
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
