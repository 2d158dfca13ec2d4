#include "config/yaml_fields.h"

#include <algorithm>
#include <charconv>

#include "config/did_you_mean.h"
#include "ebats/duration.h"

namespace ebats {
namespace {

std::string join(const std::vector<std::string_view>& words) {
  std::string out;
  for (std::string_view w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

// "workers.demo: " (or "" at the top level), prefixed to messages about a value.
std::string prefix(const std::string& path) { return path.empty() ? std::string() : path + ": "; }

std::vector<Diagnostic> sorted(std::vector<Diagnostic> list) {
  std::stable_sort(list.begin(), list.end(), [](const Diagnostic& a, const Diagnostic& b) {
    if (a.line != b.line) return a.line < b.line;
    return a.column < b.column;
  });
  return list;
}

}  // namespace

Diagnostic DiagnosticList::make(Diagnostic::Severity s, const YAML::Mark& at, std::string message) const {
  Diagnostic d;
  d.severity = s;
  d.file = file_;
  if (!at.is_null() && at.line >= 0) {
    d.line = at.line + 1;
    d.column = at.column + 1;
  }
  d.message = std::move(message);
  return d;
}

void DiagnosticList::error(const YAML::Mark& at, std::string message) {
  errors_.push_back(make(Diagnostic::Severity::error, at, std::move(message)));
}

void DiagnosticList::error_without_position(std::string message) {
  errors_.push_back(make(Diagnostic::Severity::error, YAML::Mark::null_mark(), std::move(message)));
}

void DiagnosticList::warning(const YAML::Mark& at, std::string message) {
  warnings_.push_back(make(Diagnostic::Severity::warning, at, std::move(message)));
}

std::vector<Diagnostic> DiagnosticList::sorted_errors() const { return sorted(errors_); }
std::vector<Diagnostic> DiagnosticList::sorted_warnings() const { return sorted(warnings_); }

std::string describe_node(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

YAML::Mark Field::mark() const {
  if (!is_null()) return value.Mark();
  return key_mark();
}

YAML::Mark Field::key_mark() const {
  if (key.IsDefined() && !key.IsNull()) return key.Mark();
  return value.IsDefined() ? value.Mark() : YAML::Mark::null_mark();
}

std::string Field::name() const { return key.IsDefined() && key.IsScalar() ? key.Scalar() : std::string(); }

MapFields::MapFields(const YAML::Node& map, const std::string& path, std::vector<std::string_view> known,
                     DiagnosticList& diagnostics, std::vector<std::string_view> planned) {
  if (!map.IsDefined() || !map.IsMap()) return;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: the iterator hands out a temporary pair.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      diagnostics.error(key.Mark(), prefix(path) + "keys must be plain names, found " + describe_node(key));
      continue;
    }
    const std::string& name = key.Scalar();
    const Field* earlier = find(name);
    if (earlier != nullptr) {
      diagnostics.error(key.Mark(), prefix(path) + "duplicate key '" + name + "' (first given at line " +
                                        std::to_string(earlier->key_mark().line + 1) + "); keep only one");
      continue;
    }
    if (std::find(planned.begin(), planned.end(), name) != planned.end()) {
      diagnostics.error(key.Mark(), "key '" + (path.empty() ? name : path + "." + name) +
                                        "' is not supported in this build yet; remove it (see docs/CONFIG.md)");
      continue;
    }
    if (!known.empty() && std::find(known.begin(), known.end(), name) == known.end()) {
      const std::string hint = closest_match(name, known);
      if (!hint.empty()) {
        diagnostics.error(key.Mark(), "unknown key '" + name + "' (did you mean '" + hint + "'?)");
      } else {
        diagnostics.error(key.Mark(), "unknown key '" + name + "'" + (path.empty() ? "" : " in " + path) +
                                          " (known keys: " + join(known) + ")");
      }
      continue;
    }
    index_.emplace(name, fields_.size());
    fields_.push_back(Field{path.empty() ? name : path + "." + name, key, value});
  }
}

const Field* MapFields::find(std::string_view key) const {
  const auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &fields_[it->second];
}

bool check_map(const Field& f, bool null_is_empty, std::string_view example, DiagnosticList& d) {
  if (f.is_null() && null_is_empty) return true;
  if (f.value.IsMap()) return true;
  d.error(f.mark(), prefix(f.path) + "expected a map, found " + describe_node(f.value) + "; e.g. " + std::string(example));
  return false;
}

bool check_list(const Field& f, std::string_view example, DiagnosticList& d) {
  if (f.value.IsSequence()) return true;
  d.error(f.mark(), prefix(f.path) + "expected a list, found " + describe_node(f.value) + "; e.g. " + std::string(example));
  return false;
}

std::optional<std::string> read_string(const Field& f, DiagnosticList& d) {
  if (f.is_null()) {
    d.error(f.mark(), prefix(f.path) + "has no value");
    return std::nullopt;
  }
  if (!f.value.IsScalar()) {
    d.error(f.mark(), prefix(f.path) + "expected a string, found " + describe_node(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<bool> read_bool(const Field& f, DiagnosticList& d) {
  bool value = false;
  if (f.is_null() || !f.value.IsScalar() || !YAML::convert<bool>::decode(f.value, value)) {
    d.error(f.mark(), prefix(f.path) + "expected true or false, found " + describe_node(f.value));
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> read_integer(const Field& f, int64_t min, int64_t max, DiagnosticList& d) {
  const std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (f.is_null() || !f.value.IsScalar()) {
    d.error(f.mark(), prefix(f.path) + "expected " + range + ", found " + describe_node(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    d.error(f.mark(), prefix(f.path) + "expected " + range + ", found '" + text + "'");
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> read_duration_ms(const Field& f, int64_t min_ms, DiagnosticList& d) {
  if (f.is_null() || !f.value.IsScalar()) {
    d.error(f.mark(), prefix(f.path) + "expected a duration such as 10s or 2h10m, found " + describe_node(f.value));
    return std::nullopt;
  }
  const Result<Millis> parsed = parse_duration(f.value.Scalar());
  if (!parsed.ok()) {
    d.error(f.mark(), prefix(f.path) + parsed.status().message());
    return std::nullopt;
  }
  if (parsed->count() < min_ms) {
    d.error(f.mark(), prefix(f.path) + "must be at least " + format_duration(Millis(min_ms)) + ", found '" +
                          f.value.Scalar() + "'");
    return std::nullopt;
  }
  return parsed->count();
}

std::optional<uint64_t> read_size(const Field& f, uint64_t min_bytes, DiagnosticList& d) {
  if (f.is_null() || !f.value.IsScalar()) {
    d.error(f.mark(), prefix(f.path) + "expected a size such as 4KiB or 1MiB, found " + describe_node(f.value));
    return std::nullopt;
  }
  const Result<uint64_t> parsed = parse_size(f.value.Scalar());
  if (!parsed.ok()) {
    d.error(f.mark(), prefix(f.path) + parsed.status().message());
    return std::nullopt;
  }
  if (*parsed < min_bytes) {
    d.error(f.mark(), prefix(f.path) + "must be at least " + std::to_string(min_bytes) + "B, found '" +
                          f.value.Scalar() + "'");
    return std::nullopt;
  }
  return *parsed;
}

}  // namespace ebats
