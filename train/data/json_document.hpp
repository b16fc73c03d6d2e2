// The two fields `data prepare` needs from a JSON line, {"text": "...", "meta": {"pile_set_name":
// "..."}}, read without building a JSON tree: nlohmann's SAX parser (the same lexer and grammar
// as json::parse, so the same lines are accepted: full string unescaping, UTF-8 checks, strict
// end of input) feeds a handler that keeps only those two strings. As with json::parse into a
// tree, a key given twice counts with its last value.
#pragma once

#include <string>
#include <string_view>

namespace dssm::data {

// False unless `line` is a JSON object whose "text" is a string. `set_name` receives
// meta.pile_set_name, "" when absent or not a string.
bool parse_json_document(std::string_view line, std::string& text, std::string& set_name);

}  // namespace dssm::data
