// yaml_to_json(): a YAML node as compact JSON text, for plugin settings.
//
// Maps become objects (keys as strings), sequences arrays. Scalars follow the
// YAML 1.2 core schema, as a reader of the file would expect: plain `null`,
// `~` or nothing is null; plain `true`/`false` (any of their three spellings)
// a boolean; a plain decimal integer or float a number, digit for digit; any
// other scalar, and every quoted one ('3', "true"), a string. `.inf` and
// `.nan` have no JSON form and stay strings.
//
// Refused, with the position of the node at fault: a key given twice in one
// map (after conversion to a string: `1` and "1" are the same key), nesting
// deeper than kMaxYamlJsonDepth (a recursive alias), and JSON text longer
// than `max_bytes` (aliases can multiply a small file). Pure; never throws.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <string>

namespace ebats {

constexpr size_t kMaxYamlJsonDepth = 64;

struct YamlJson {
  std::string json;   // the JSON text; valid when error is empty
  std::string error;  // what is wrong, e.g. "key 'pool' appears twice"
  YAML::Mark mark;    // where (the node at fault)
  bool too_large = false;  // the error is the max_bytes one
  bool ok() const { return error.empty(); }
};

YamlJson yaml_to_json(const YAML::Node& node, size_t max_bytes);

}  // namespace ebats
