// The sentencepiece tokenizer: trained here on the tiny corpus, it encodes and decodes text
// losslessly, with LLaMA's special ids.
#include <catch2/catch.hpp>

#include "tensor/error.hpp"
#include "tests/test_data_helpers.hpp"
#include "train/data/raw_documents.hpp"
#include "train/data/tokenizer.hpp"

using namespace dssm::data;

#if DSSM_WITH_SENTENCEPIECE

TEST_CASE("A trained tokenizer has LLaMA's special ids and decodes what it encodes", "[data]") {
  const Tokenizer tokenizer(dssm::test::tiny_tokenizer());
  CHECK(tokenizer.vocab_size() > 259);
  CHECK(tokenizer.vocab_size() <= 400);
  CHECK(tokenizer.bos_id() == 1);
  CHECK(tokenizer.eos_id() == 2);
  CHECK(tokenizer.word_cache_enabled());

  RawDocumentReader corpus({dssm::test::tiny_corpus()});
  RawDocument document;
  int documents = 0;
  while (corpus.next(document)) {
    const std::vector<int32_t> ids = tokenizer.encode(document.text);
    CHECK(ids.size() < document.text.size());  // merges were learnt
    CHECK(tokenizer.decode(ids) == document.text);
    CHECK(ids == tokenizer.encode_whole(document.text));  // the word cache changes nothing
    ++documents;
  }
  CHECK(documents == 12);

  // Unseen words, digits, accents, other scripts and emoji round-trip through byte pieces.
  auto rng = dssm::test::fresh_rng();
  const std::vector<std::string> words = {"naïve",    "café",        "東京", "🙂",   "x86_64",
                                          "tab\tbed", "line\nbreak", "2024", "Zürich", "αβγ"};
  for (int trial = 0; trial < 20; ++trial) {
    std::string text = words[rng() % words.size()];
    for (int w = 0; w < 8; ++w) {
      text += std::string(rng() % 3, ' ');  // runs of 0 to 2 spaces
      text += words[rng() % words.size()];
    }
    if (rng() % 2) text = "  " + text + " ";
    CHECK(tokenizer.decode(tokenizer.encode(text)) == text);
    CHECK(tokenizer.encode(text) == tokenizer.encode_whole(text));
  }
}

TEST_CASE("Texts split into cached words get the ids of one sentencepiece call", "[data]") {
  const Tokenizer tokenizer(dssm::test::tiny_tokenizer());
  REQUIRE(tokenizer.word_cache_enabled());
  // Random words over letters seen in training, digits, punctuation, characters the vocabulary
  // lacks (byte fallback), tabs and newlines, in runs that make many merge orders.
  const std::vector<std::string> characters = {"t",  "h", "e", "a",  "n",    "s",    "i", "o", "r",
                                               "l",  "T", "0", "7",  ".",    ",",    "-", "_", "\t",
                                               "\n", "é", "ß", "東", "🙂", "\x01", " "};
  auto rng = dssm::test::fresh_rng();
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    const size_t length = 1 + rng() % 24;
    for (size_t c = 0; c < length; ++c) text += characters[rng() % characters.size()];
    INFO(text);
    REQUIRE(tokenizer.encode(text) == tokenizer.encode_whole(text));
  }
}

TEST_CASE("A unigram model encodes whole texts (no word cache)", "[data]") {
  dssm::test::ScratchDir dir;
  train_tokenizer({.inputs = {dssm::test::tiny_corpus()},
                   .model_prefix = dir / "unigram",
                   .vocab_size = 400,
                   .model_type = "unigram",
                   .threads = 1});
  const Tokenizer tokenizer(dir / "unigram.model");
  CHECK_FALSE(tokenizer.word_cache_enabled());
  const std::string text = "Tokenization splits text  into units.\n";
  CHECK(tokenizer.encode(text) == tokenizer.encode_whole(text));
  CHECK(tokenizer.decode(tokenizer.encode(text)) == text);
}

TEST_CASE("Tokenizer errors name the file", "[data]") {
  CHECK_THROWS_WITH(Tokenizer("/nonexistent/x.model"), Catch::Contains("/nonexistent/x.model"));
  CHECK_THROWS_WITH(
      train_tokenizer({.inputs = {"/nonexistent/corpus.jsonl"}, .model_prefix = "/tmp/never"}),
      Catch::Contains("/nonexistent/corpus.jsonl"));
}

#else

TEST_CASE("Without sentencepiece the tokenizer says so", "[data]") {
  CHECK_THROWS_WITH(Tokenizer("x.model"), Catch::Contains("built without sentencepiece"));
}

#endif
