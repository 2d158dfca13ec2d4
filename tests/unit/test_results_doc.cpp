// docs/RESULTS.md stays true: its field table names exactly the members
// result_to_json() writes, and its example line has the same members.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "ebats/result.h"

namespace {

std::string results_doc() {
  std::ifstream in(std::string(EBATS_SOURCE_DIR) + "/docs/RESULTS.md");
  std::stringstream s;
  s << in.rdbuf();
  REQUIRE_FALSE(s.str().empty());
  return s.str();
}

std::set<std::string> members(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  std::set<std::string> out;
  for (const auto& m : d.GetObject()) out.insert(m.name.GetString());
  return out;
}

}  // namespace

TEST_CASE("docs/RESULTS.md: the field table and the example name every member of a result record, and no other",
          "[docs][results]") {
  const std::string doc = results_doc();
  // The rows of the "Fields" table: | `name` | type | meaning |
  std::set<std::string> documented;
  const std::string fields = doc.substr(doc.find("## Fields"));
  static const std::regex row(R"(\n\| `([a-z_]+)` \| )");
  for (auto it = std::sregex_iterator(fields.begin(), fields.end(), row); it != std::sregex_iterator(); ++it) {
    documented.insert((*it)[1].str());
  }
  ebats::ResultRecord r;
  r.topic = "demo";
  r.task_id = "0e45e837-9eab-8961-b27f-45b936a9303f";
  r.task = "closeOrder";
  r.params = R"({"order_id":10042})";
  r.status = "ok";
  r.trace = "req-8c1f2b";  // written only when set: the table lists it
  r.host = "worker-1";
  CHECK(documented == members(ebats::result_to_json(r)));

  const size_t start = doc.find("```json\n");
  REQUIRE(start != std::string::npos);
  const size_t end = doc.find("```", start + 8);
  CHECK(members(doc.substr(start + 8, end - start - 8)) == documented);
}
