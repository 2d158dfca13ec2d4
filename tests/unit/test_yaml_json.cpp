// yaml_to_json(): plugin settings as their plugin's init() receives them.
#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include "config/yaml_json.h"

using ebats::yaml_to_json;

namespace {

std::string json_of(const std::string& yaml) {
  const ebats::YamlJson out = yaml_to_json(YAML::Load(yaml), 1 << 20);
  INFO(out.error);
  REQUIRE(out.ok());
  return out.json;
}

// The refusal for `yaml` as "line:column: error" (1-based).
std::string refusal_of(const std::string& yaml, size_t max_bytes = 1 << 20) {
  const ebats::YamlJson out = yaml_to_json(YAML::Load(yaml), max_bytes);
  if (out.ok()) return "accepted: " + out.json;
  return std::to_string(out.mark.line + 1) + ":" + std::to_string(out.mark.column + 1) + ": " + out.error;
}

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

TEST_CASE("yaml_to_json: refuses repeated keys, recursive aliases and oversized text, saying where",
          "[config][yaml_json]") {
  CHECK(refusal_of("a: 1\nb: {c: 2, c: 3}\n") == "2:11: key 'c' appears twice");
  CHECK(refusal_of("{1: x, '1': y}") == "1:8: key '1' appears twice");  // the same key once it is JSON
  CHECK(refusal_of("{[a]: x}") == "1:2: a key must be a plain value, not a map or a list");
  CHECK_THAT(refusal_of("a: &x {k: [*x]}\n"), Catch::Contains("nested more than 64 levels deep (a recursive alias?)"));
  // Aliases that multiply ("billion laughs") stop at the size limit, early.
  const std::string laughs = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
                             "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n";
  CHECK_THAT(refusal_of(laughs, 4096), Catch::Contains("more than 4096 bytes as JSON"));
  CHECK_THAT(refusal_of("{a: 12345}", 10), Catch::EndsWith("more than 10 bytes as JSON"));  // {"a":12345} is 11
  CHECK(refusal_of("{a: 12345}", 11) == "accepted: {\"a\":12345}");
}
