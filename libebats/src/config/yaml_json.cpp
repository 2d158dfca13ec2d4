#include "config/yaml_json.h"

#include <cctype>
#include <regex>
#include <set>
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

// One conversion: the writer, the limits, and the first problem met.
class Converter {
 public:
  Converter(std::string* out, size_t max_bytes) : sink_(out), writer_(sink_), out_(out), max_bytes_(max_bytes) {}

  // Writes `node`; false once a problem was recorded in *problem.
  bool write(const YAML::Node& node, size_t depth, YamlJson* problem) {
    if (depth > kMaxYamlJsonDepth) {
      return fail(problem, node, "nested more than " + std::to_string(kMaxYamlJsonDepth) +
                                     " levels deep (a recursive alias?)");
    }
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        writer_.StartObject();
        std::set<std::string> keys;
        for (const auto& entry : node) {
          std::string key;
          if (entry.first.IsScalar()) {
            key = entry.first.Scalar();
          } else if (entry.first.IsNull()) {
            key = "null";  // `null:`, `~:` or an empty key
          } else {
            return fail(problem, entry.first, "a key must be a plain value, not a map or a list");
          }
          if (!keys.insert(key).second) return fail(problem, entry.first, "key '" + key + "' appears twice");
          json::write_string(writer_, key);
          if (!write(entry.second, depth + 1, problem)) return false;
        }
        writer_.EndObject();
        break;
      }
      case YAML::NodeType::Sequence:
        writer_.StartArray();
        for (const auto& item : node) {
          if (!write(item, depth + 1, problem)) return false;
        }
        writer_.EndArray();
        break;
      case YAML::NodeType::Scalar:
        write_scalar(node);
        break;
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        writer_.Null();
        break;
    }
    if (out_->size() > max_bytes_) {
      problem->too_large = true;
      return fail(problem, node, "more than " + std::to_string(max_bytes_) + " bytes as JSON");
    }
    return true;
  }

 private:
  void write_scalar(const YAML::Node& node) {
    const std::string& s = node.Scalar();
    if (node.Tag() != "?") {  // quoted ("!") or explicitly tagged: the text as it is
      json::write_string(writer_, s);
    } else if (is_null_word(s)) {
      writer_.Null();
    } else if (s == "true" || s == "True" || s == "TRUE") {
      writer_.Bool(true);
    } else if (s == "false" || s == "False" || s == "FALSE") {
      writer_.Bool(false);
    } else if (std::string number; json_number(s, &number)) {
      json::write_raw_number(writer_, number.data(), number.size());
    } else {
      json::write_string(writer_, s);
    }
  }

  static bool fail(YamlJson* problem, const YAML::Node& at, std::string why) {
    problem->error = std::move(why);
    problem->mark = at.Mark();
    return false;
  }

  json::StringSink sink_;
  json::Writer writer_;
  const std::string* out_;
  size_t max_bytes_;
};

}  // namespace

YamlJson yaml_to_json(const YAML::Node& node, size_t max_bytes) {
  YamlJson result;
  std::string out;
  Converter converter(&out, max_bytes);
  if (converter.write(node, 0, &result)) result.json = std::move(out);
  return result;
}

}  // namespace ebats
