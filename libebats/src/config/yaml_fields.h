// Schema-checked reading of yaml-cpp nodes for the config loader.
//
// Every reader reports a problem as a Diagnostic positioned at the offending
// node (yaml-cpp marks are 0-based; DiagnosticList adds 1) and returns
// std::nullopt / false, so the loader keeps going and collects every error.
// Nothing here throws: yaml-cpp is only asked for what the node type allows.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ebats/config.h"

namespace ebats {

// The diagnostics of one config file.
class DiagnosticList {
 public:
  explicit DiagnosticList(std::string file) : file_(std::move(file)) {}
  void error(const YAML::Mark& at, std::string message);
  void error_without_position(std::string message);
  void warning(const YAML::Mark& at, std::string message);
  bool has_errors() const { return !errors_.empty(); }
  // Sorted by position (unpositioned first), in the order reported otherwise.
  std::vector<Diagnostic> sorted_errors() const;
  std::vector<Diagnostic> sorted_warnings() const;

 private:
  Diagnostic make(Diagnostic::Severity s, const YAML::Mark& at, std::string message) const;
  std::string file_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

// "a map", "a list", "nothing", or "'two'" for a scalar: how a found node is named in messages.
std::string describe_node(const YAML::Node& node);

// One `key: value` entry of a map (or one item of a list, with a null key).
struct Field {
  std::string path;  // dotted path for messages: "workers.demo.timeout", "events.order_paied[1]"
  YAML::Node key;
  YAML::Node value;
  // Where to point for a problem with the value: the value itself, or the key
  // when the value is empty (yaml-cpp gives empty values a misleading mark).
  YAML::Mark mark() const;
  YAML::Mark key_mark() const;
  bool is_null() const { return !value.IsDefined() || value.IsNull(); }
  std::string name() const;  // the key as a string ("" for list items)
};

// The entries of one YAML map, checked against the keys its schema allows.
class MapFields {
 public:
  // Reports non-scalar keys, duplicate keys and (when `known` is not empty)
  // unknown keys with a did-you-mean hint; keys in `planned` are reported as
  // "not supported in this build yet". A node that is not a map has no fields.
  MapFields(const YAML::Node& map, const std::string& path, std::vector<std::string_view> known,
            DiagnosticList& diagnostics, std::vector<std::string_view> planned = {});
  const Field* find(std::string_view key) const;  // nullptr when absent
  const std::vector<Field>& all() const { return fields_; }

 private:
  std::vector<Field> fields_;
  std::unordered_map<std::string, size_t> index_;  // key -> position in fields_ (a map of 30,000 events stays linear)
};

// True when the field holds a map (or, if null_is_empty, nothing); else reports
// "expected a map" with `example` as the fix.
bool check_map(const Field& f, bool null_is_empty, std::string_view example, DiagnosticList& d);
bool check_list(const Field& f, std::string_view example, DiagnosticList& d);

std::optional<std::string> read_string(const Field& f, DiagnosticList& d);
// A decimal integer in [min, max].
std::optional<int64_t> read_integer(const Field& f, int64_t min, int64_t max, DiagnosticList& d);
// A boolean as YAML spells it (true/false, also yes/no, on/off, y/n, as yaml-cpp decodes them).
std::optional<bool> read_bool(const Field& f, DiagnosticList& d);
// A duration (see duration.h) of at least min_ms.
std::optional<int64_t> read_duration_ms(const Field& f, int64_t min_ms, DiagnosticList& d);
// A size (see duration.h) of at least min_bytes.
std::optional<uint64_t> read_size(const Field& f, uint64_t min_bytes, DiagnosticList& d);

}  // namespace ebats
