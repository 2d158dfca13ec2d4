// yaml_to_json(): plugin settings as their plugin's init() receives them.
#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include "config/yaml_json.h"

using ebats::yaml_to_json;

namespace {

std::string json_of(const std::string& yaml) { return yaml_to_json(YAML::Load(yaml)); }

}  // namespace

TEST_CASE("yaml_to_json: maps, lists and nesting", "[config][yaml_json]") {
  CHECK(json_of("{a: 1, b: [x, y], c: {d: e}}") == R"({"a":1,"b":["x","y"],"c":{"d":"e"}})");
  CHECK(json_of("a:\n  - 1\n  - {b: c}\n") == R"({"a":[1,{"b":"c"}]})");
  CHECK(json_of("{}") == "{}");
  CHECK(json_of("[]") == "[]");
}

TEST_CASE("yaml_to_json: plain scalars follow the YAML 1.2 core schema", "[config][yaml_json]") {
  CHECK(json_of("{a: ~, b: null, c: Null, d: NULL, e: }") == R"({"a":null,"b":null,"c":null,"d":null,"e":null})");
  CHECK(json_of("{a: true, b: True, c: FALSE}") == R"({"a":true,"b":true,"c":false})");
  CHECK(json_of("{a: yes, b: on, c: n}") == R"({"a":"yes","b":"on","c":"n"})");  // YAML 1.1 words stay text
  CHECK(json_of("{a: 42, b: -7, c: +3, d: 0}") == R"({"a":42,"b":-7,"c":3,"d":0})");
  CHECK(json_of("{a: 1.50, b: .5, c: -5., d: 1e3, e: 2.5E-2}") == R"({"a":1.50,"b":0.5,"c":-5.0,"d":1e3,"e":2.5E-2})");
  CHECK(json_of("{a: 123456789012345678901234567890}") == R"({"a":123456789012345678901234567890})");  // verbatim
  CHECK(json_of("{a: 007, b: 0x1F, c: .inf, d: .nan, e: 1_000}") ==
        R"({"a":"007","b":"0x1F","c":".inf","d":".nan","e":"1_000"})");
  CHECK(json_of("{a: postgres://u@h/db, b: 10s, c: 'x \"y\"'}") == R"({"a":"postgres://u@h/db","b":"10s","c":"x \"y\""})");
}

TEST_CASE("yaml_to_json: quoted and tagged scalars are always strings", "[config][yaml_json]") {
  CHECK(json_of(R"({a: '42', b: "true", c: '~', d: !!str 3})") == R"({"a":"42","b":"true","c":"~","d":"3"})");
}

TEST_CASE("yaml_to_json: keys are strings, whatever they look like", "[config][yaml_json]") {
  CHECK(json_of("{1: a, true: b, null: c}") == R"({"1":"a","true":"b","null":"c"})");
}
