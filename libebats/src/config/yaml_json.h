// yaml_to_json(): a YAML node as compact JSON text, for plugin settings.
//
// Maps become objects (keys as strings), sequences arrays. Scalars follow the
// YAML 1.2 core schema, as a reader of the file would expect: plain `null`,
// `~` or nothing is null; plain `true`/`false` (any of their three spellings)
// a boolean; a plain decimal integer or float a number, digit for digit; any
// other scalar, and every quoted one ('3', "true"), a string. `.inf` and
// `.nan` have no JSON form and stay strings. Pure; never throws.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace ebats {

std::string yaml_to_json(const YAML::Node& node);

}  // namespace ebats
