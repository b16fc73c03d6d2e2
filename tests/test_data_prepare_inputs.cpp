// The pieces in front of the tokenizer in `data prepare`: the JSON-line reader (the same
// verdicts and values as nlohmann::json::parse into a tree) and the word cache.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "tests/test_data_helpers.hpp"
#include "train/data/json_document.hpp"
#include "train/data/word_cache.hpp"

using namespace dssm::data;

namespace {

// What raw_documents.cpp did before the SAX reader: a whole JSON tree.
bool parse_with_tree(const std::string& line, std::string& text, std::string& set_name) {
  const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
  if (!json.is_object() || !json.contains("text") || !json["text"].is_string()) return false;
  text = json["text"].get<std::string>();
  set_name.clear();
  const auto meta = json.find("meta");
  if (meta != json.end() && meta->is_object()) {
    const auto name = meta->find("pile_set_name");
    if (name != meta->end() && name->is_string()) set_name = name->get<std::string>();
  }
  return true;
}

}  // namespace

TEST_CASE("JSON lines: the text and set name, unescaped", "[data]") {
  std::string text, set;
  REQUIRE(parse_json_document(
      R"({"text": "a\"b\\c\n\t\u00e9\ud83d\ude00", "meta": {"pile_set_name": "Pile-CC"}})", text,
      set));
  CHECK(text == "a\"b\\c\n\t\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(set == "Pile-CC");
  REQUIRE(parse_json_document(R"( {"meta": 3, "x": [1, {"text": 2}], "text": ""} )", text, set));
  CHECK(text.empty());
  CHECK(set.empty());
  CHECK_FALSE(parse_json_document(R"({"text": 1})", text, set));
  CHECK_FALSE(parse_json_document(R"({"text": "a"} x)", text, set));
  CHECK_FALSE(parse_json_document(R"(["text", "a"])", text, set));
}

TEST_CASE("JSON lines: the same verdicts and values as a full JSON tree", "[data]") {
  const std::vector<std::string> lines = {
      R"({"text": "plain"})",
      R"({"text": "first", "text": "last"})",
      R"({"text": "a", "text": 5})",
      R"({"text": "a", "meta": {"pile_set_name": "A"}, "meta": {"other": 1}})",
      R"({"text": "a", "meta": {"pile_set_name": "A", "pile_set_name": null}})",
      R"({"text": "a", "meta": {"pile_set_name": ["A"]}})",
      R"({"text": "a", "meta": [{"pile_set_name": "A"}]})",
      R"({"text": "a", "meta": {"inner": {"pile_set_name": "B"}}, "pile_set_name": "C"})",
      R"({"meta": {"text": "not this"}})",
      R"({"text": {"text": "nested"}})",
      R"({"text": "x", "n": [1, -2.5e3, true, false, null, {}, []]})",
      R"({"text": "x", "n": 1e999})",  // overflow: nlohmann rejects it
      R"({"text": "\ud800"})",         // lone surrogate
      R"({"text": "\x"})",
      "{\"text\": \"tab\tinside\"}",  // control character in a string
      "{\"text\": \"crlf\"}\r",
      "\xEF\xBB\xBF{\"text\": \"after a byte order mark\"}",
      R"({"text": "unterminated)",
      R"({"text": "a",})",
      R"({"text": "a"}{"text": "b"})",
      "",
      "  ",
      R"("text")",
      R"({"text": "\u0000 nul"})",
  };
  for (const std::string& line : lines) {
    INFO(line);
    std::string text = "stale", set = "stale", tree_text = "stale", tree_set = "stale";
    const bool ok = parse_json_document(line, text, set);
    REQUIRE(ok == parse_with_tree(line, tree_text, tree_set));
    if (ok) {
      CHECK(text == tree_text);
      CHECK(set == tree_set);
    }
  }
}

TEST_CASE("The word cache finds what it holds, grows, and skips long words", "[data]") {
  WordCache cache;
  std::span<const int32_t> ids;
  CHECK_FALSE(cache.find("word", ids));
  for (int32_t i = 0; i < 20000; ++i) {
    const std::string word = fmt::format("w{}", i);
    const std::vector<int32_t> word_ids = {i, i + 1, i % 7};
    cache.insert(word, word_ids);
  }
  CHECK(cache.size() == 20000);
  for (int32_t i = 0; i < 20000; i += 97) {
    REQUIRE(cache.find(fmt::format("w{}", i), ids));
    CHECK(std::vector<int32_t>(ids.begin(), ids.end()) == std::vector<int32_t>{i, i + 1, i % 7});
  }
  CHECK_FALSE(cache.find("w20000", ids));
  CHECK_FALSE(cache.find("w1 ", ids));

  const std::string long_word(WordCache::kMaxWordBytes + 1, 'x');
  const std::vector<int32_t> one = {1};
  cache.insert(long_word, one);
  CHECK_FALSE(cache.find(long_word, ids));
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.find("w0", ids));
}
