#include "train/data/json_document.hpp"

#include <nlohmann/json.hpp>

namespace dssm::data {
namespace {

using json = nlohmann::json;

// Follows the nesting of the SAX events: depth 1 is the top-level object, depth 2 the inside of
// its values. Strings are swapped out of the parser's buffer, not copied.
class DocumentFields {
 public:
  DocumentFields(std::string& text, std::string& set_name) : text_(text), set_name_(set_name) {}

  bool found() const { return top_is_object_ && has_text_; }

  bool start_object(std::size_t) {
    if (depth_ == 0) top_is_object_ = true;
    if (depth_ == 1 && key_ == Key::meta) in_meta_ = true;
    return ++depth_, true;
  }
  bool end_object() { return leave(); }
  bool start_array(std::size_t) { return ++depth_, true; }
  bool end_array() { return leave(); }

  bool key(json::string_t& name) {
    if (depth_ == 1) {
      key_ = name == "text" ? Key::text : name == "meta" ? Key::meta : Key::other;
      if (key_ == Key::text) has_text_ = false;  // the last "text" counts
      if (key_ == Key::meta) set_name_.clear();  // the last "meta" counts
    } else if (depth_ == 2 && in_meta_) {
      name_key_ = name == "pile_set_name";
      if (name_key_) set_name_.clear();
    }
    return true;
  }

  bool string(json::string_t& value) {
    if (depth_ == 1 && key_ == Key::text) {
      text_.swap(value);
      has_text_ = true;
    } else if (depth_ == 2 && in_meta_ && name_key_) {
      set_name_.swap(value);
    }
    return true;
  }
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  enum class Key { text, meta, other };

  bool leave() {
    if (--depth_ == 1) in_meta_ = false;
    return true;
  }

  std::string& text_;
  std::string& set_name_;
  int depth_ = 0;
  bool top_is_object_ = false;
  bool has_text_ = false;
  Key key_ = Key::other;   // the latest key of the top-level object
  bool in_meta_ = false;   // inside the object that is the value of "meta"
  bool name_key_ = false;  // the latest key inside it is "pile_set_name"
};

}  // namespace

bool parse_json_document(std::string_view line, std::string& text, std::string& set_name) {
  set_name.clear();
  DocumentFields fields(text, set_name);
  return json::sax_parse(line.data(), line.data() + line.size(), &fields) && fields.found();
}

}  // namespace dssm::data
