#include "train/data/bpe_words.hpp"

#include <bit>
#include <charconv>
#include <cstring>

#include "train/data/protobuf_wire.hpp"
#include "train/data/word_cache.hpp"

namespace dssm::data {
namespace {

constexpr std::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space

// sentencepiece_model.proto: ModelProto.SentencePiece.Type
enum PieceType : uint64_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6
};

struct ModelPiece {
  std::string_view text;
  float score = 0;
  uint64_t type = normal;
};

ModelPiece read_piece(std::string_view message) {
  ModelPiece piece;
  for_each_field(message, [&](const WireField& field) {
    if (field.number == 1) piece.text = field.bytes;
    if (field.number == 2) piece.score = std::bit_cast<float>(static_cast<uint32_t>(field.value));
    if (field.number == 3) piece.type = field.value;
  });
  return piece;
}

bool flag(std::string_view message, uint64_t number, bool otherwise) {
  const auto field = find_field(message, number);
  return field ? field->value != 0 : otherwise;
}

// TrainerSpec: BPE (model_type 3 = 2), byte_fallback (35), whitespace as prefix (24 false);
// NormalizerSpec: no precompiled_charsmap (2), add_dummy_prefix (3), no
// remove_extra_whitespaces (4), escape_whitespaces (5).
bool supported_specs(std::string_view model_proto) {
  const auto trainer = find_field(model_proto, 2);
  const auto normalizer = find_field(model_proto, 3);
  if (!trainer || !normalizer) return false;
  const auto model_type = find_field(trainer->bytes, 3);
  const auto charsmap = find_field(normalizer->bytes, 2);
  return model_type && model_type->value == 2 && flag(trainer->bytes, 35, false) &&
         !flag(trainer->bytes, 24, false) && (!charsmap || charsmap->bytes.empty()) &&
         flag(normalizer->bytes, 3, true) && !flag(normalizer->bytes, 4, true) &&
         flag(normalizer->bytes, 5, true);
}

// "<0x41>" -> 0x41; -1 for any other text.
int byte_of(std::string_view text) {
  int value = -1;
  if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return -1;
  const auto [end, error] = std::from_chars(text.data() + 3, text.data() + 5, value, 16);
  return error == std::errc{} && end == text.data() + 5 ? value : -1;
}

size_t utf8_length(char lead) {
  const auto c = static_cast<unsigned char>(lead);
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

}  // namespace

std::unique_ptr<BpeWords> BpeWords::from_model(std::string_view model_proto) {
  if (!supported_specs(model_proto)) return nullptr;
  std::vector<ModelPiece> pieces;
  for_each_field(model_proto, [&](const WireField& field) {
    if (field.number == 1) pieces.push_back(read_piece(field.bytes));
  });
  std::unique_ptr<BpeWords> bpe(new BpeWords());
  bpe->pieces_.resize(std::bit_ceil(4 * pieces.size()));
  size_t bytes_found = 0;
  for (size_t id = 0; id < pieces.size(); ++id) {
    const ModelPiece& piece = pieces[id];
    if (piece.type == user_defined || piece.type == unused) return nullptr;
    if (piece.type == normal) {
      const auto at = static_cast<uint32_t>(bpe->text_.size());
      bpe->text_ += piece.text;
      bpe->add(at, static_cast<uint32_t>(piece.text.size()), static_cast<int32_t>(id), piece.score);
    } else if (piece.type == byte && byte_of(piece.text) >= 0) {
      bpe->byte_ids_[byte_of(piece.text)] = static_cast<int32_t>(id);
      ++bytes_found;
    }
  }
  return bytes_found == 256 ? std::move(bpe) : nullptr;
}

void BpeWords::add(uint32_t at, uint32_t size, int32_t id, float score) {
  const size_t mask = pieces_.size() - 1;
  size_t i = hash_bytes({text_.data() + at, size}) & mask;
  while (pieces_[i].size != 0) i = (i + 1) & mask;
  pieces_[i] = {.at = at, .size = size, .id = id, .score = score};
}

const BpeWords::Piece* BpeWords::find(std::string_view piece) const {
  const size_t mask = pieces_.size() - 1;
  for (size_t i = hash_bytes(piece) & mask; pieces_[i].size != 0; i = (i + 1) & mask) {
    const Piece& slot = pieces_[i];
    if (slot.size == piece.size() &&
        std::memcmp(text_.data() + slot.at, piece.data(), slot.size) == 0) {
      return &slot;
    }
  }
  return nullptr;
}

void BpeWords::encode(std::string_view word, std::vector<int32_t>& ids) const {
  std::string text(kMetaSpace);
  for (const char c : word) {
    if (c == ' ') {
      text += kMetaSpace;
    } else {
      text += c;
    }
  }
  // The symbols, as byte ranges of `text`, with the piece each is and the piece it would make
  // with its right neighbour (nullptr: none).
  struct Symbol {
    size_t begin, end;
    const Piece *piece, *joined;
  };
  std::vector<Symbol> symbols;
  for (size_t at = 0, next = 0; at < text.size(); at = next) {
    next = at + utf8_length(text[at]);
    symbols.push_back({at, next, find(std::string_view(text).substr(at, next - at)), nullptr});
  }
  const auto pair_with_next = [&](size_t i) {
    if (i + 1 < symbols.size()) {
      symbols[i].joined = find(
          std::string_view(text).substr(symbols[i].begin, symbols[i + 1].end - symbols[i].begin));
    } else {
      symbols[i].joined = nullptr;
    }
  };
  for (size_t i = 0; i < symbols.size(); ++i) pair_with_next(i);
  while (true) {
    size_t best = symbols.size();
    for (size_t i = 0; i < symbols.size(); ++i) {
      const Piece* joined = symbols[i].joined;
      if (joined && (best == symbols.size() || joined->score > symbols[best].joined->score)) {
        best = i;
      }
    }
    if (best == symbols.size()) break;
    symbols[best].end = symbols[best + 1].end;
    symbols[best].piece = symbols[best].joined;
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    pair_with_next(best);
    if (best > 0) pair_with_next(best - 1);
  }
  for (const Symbol& symbol : symbols) {
    if (symbol.piece) {
      ids.push_back(symbol.piece->id);
    } else {
      for (size_t at = symbol.begin; at < symbol.end; ++at) {
        ids.push_back(byte_ids_[static_cast<unsigned char>(text[at])]);
      }
    }
  }
}

}  // namespace dssm::data
