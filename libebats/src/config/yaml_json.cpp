#include "config/yaml_json.h"

#include <cctype>
#include <regex>
#include <string_view>

#include "envelope/json_io.h"

namespace ebats {
namespace {

bool is_null_word(std::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// YAML 1.2 core schema integers and floats that JSON can also spell: decimal
// only (no 0x / 0o), a leading '+' dropped, '.5' and '5.' completed.
bool json_number(const std::string& s, std::string* out) {
  static const std::regex kNumber(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (!std::regex_match(s, kNumber)) return false;
  std::string n = s[0] == '+' ? s.substr(1) : s;
  const size_t digits = n[0] == '-' ? 1 : 0;
  if (n[digits] == '.') n.insert(digits, "0");           // .5 -> 0.5
  const size_t dot = n.find('.');
  if (dot != std::string::npos && (dot + 1 == n.size() || !std::isdigit(static_cast<unsigned char>(n[dot + 1])))) {
    n.insert(dot + 1, "0");                              // 5. -> 5.0, 5.e3 -> 5.0e3
  }
  // JSON forbids leading zeros ("007"): such integers stay strings.
  if (n.size() > digits + 1 && n[digits] == '0' && std::isdigit(static_cast<unsigned char>(n[digits + 1]))) {
    return false;
  }
  *out = std::move(n);
  return true;
}

void write_node(json::Writer& w, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      w.StartObject();
      for (const auto& entry : node) {
        json::write_string(w, entry.first.IsScalar() ? entry.first.Scalar() : yaml_to_json(entry.first));
        write_node(w, entry.second);
      }
      w.EndObject();
      return;
    case YAML::NodeType::Sequence:
      w.StartArray();
      for (const auto& item : node) write_node(w, item);
      w.EndArray();
      return;
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() != "?") {  // quoted ("!") or explicitly tagged: the text as it is
        json::write_string(w, s);
        return;
      }
      if (is_null_word(s)) {
        w.Null();
      } else if (s == "true" || s == "True" || s == "TRUE") {
        w.Bool(true);
      } else if (s == "false" || s == "False" || s == "FALSE") {
        w.Bool(false);
      } else if (std::string number; json_number(s, &number)) {
        json::write_raw_number(w, number.data(), number.size());
      } else {
        json::write_string(w, s);
      }
      return;
    }
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      w.Null();
      return;
  }
}

}  // namespace

std::string yaml_to_json(const YAML::Node& node) {
  std::string out;
  json::StringSink sink(&out);
  json::Writer w(sink);
  write_node(w, node);
  return out;
}

}  // namespace ebats
