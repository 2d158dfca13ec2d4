// result_to_json(): key order, params embedding, escaping, invalid UTF-8.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "ebats/result.h"

namespace {

ebats::ResultRecord sample() {
  ebats::ResultRecord r;
  r.topic = "demo";
  r.task_id = "0e45e837-9eab-5961-b27f-45b936a9303f";
  r.task = "closeOrder";
  r.params = R"({"order_id":10042})";
  r.time_ms = 37;
  r.message = "closed";
  r.status = "ok";
  r.attempt = 1;
  r.started_at = 1732550410000;
  r.finished_at = 1732550410037;
  r.due_at = 1732550409990;
  r.trace = "req-8c1f2b";
  r.host = "worker-1";
  r.pid = 4242;
  return r;
}

// Parses strictly (UTF-8 validated); fails the test if the text is not JSON.
rapidjson::Document parse(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  INFO(json);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

std::vector<std::string> keys_of(const rapidjson::Document& doc) {
  std::vector<std::string> keys;
  for (const auto& m : doc.GetObject()) keys.emplace_back(m.name.GetString());
  return keys;
}

}  // namespace

TEST_CASE("a result record is one JSON object with every field in order", "[result]") {
  const std::string json = ebats::result_to_json(sample());
  CHECK(json == R"({"topic":"demo","task_id":"0e45e837-9eab-5961-b27f-45b936a9303f","task":"closeOrder",)"
                R"("params":{"order_id":10042},"time_ms":37,"message":"closed","status":"ok","attempt":1,)"
                R"("started_at":1732550410000,"finished_at":1732550410037,"due_at":1732550409990,"trace":"req-8c1f2b",)"
                R"("host":"worker-1",)"
                R"("pid":4242})");
  const rapidjson::Document doc = parse(json);
  CHECK(keys_of(doc) == std::vector<std::string>{"topic", "task_id", "task", "params", "time_ms", "message", "status",
                                                 "attempt", "started_at", "finished_at", "due_at", "trace", "host",
                                                 "pid"});
  CHECK(doc["params"]["order_id"].GetInt() == 10042);
  CHECK(doc["pid"].GetInt64() == 4242);
  CHECK(json.find('\n') == std::string::npos);
}

TEST_CASE("a result record omits an empty trace", "[result]") {
  ebats::ResultRecord r = sample();
  r.trace.clear();
  const rapidjson::Document doc = parse(ebats::result_to_json(r));
  CHECK_FALSE(doc.HasMember("trace"));
  CHECK(doc.HasMember("host"));
}

TEST_CASE("result params are embedded compactly when they are one object, as a string otherwise", "[result]") {
  ebats::ResultRecord r = sample();
  SECTION("pretty-printed params lose their newlines") {
    r.params = "{\n  \"order_id\": 10042,\n  \"big\": 123456789012345678901234567890\n}";
    const std::string json = ebats::result_to_json(r);
    CHECK(json.find('\n') == std::string::npos);
    CHECK(json.find(R"("params":{"order_id":10042,"big":123456789012345678901234567890})") != std::string::npos);
  }
  SECTION("params cut mid-way are kept as a string") {
    r.params = R"({"order_id":100)";
    const rapidjson::Document doc = parse(ebats::result_to_json(r));
    REQUIRE(doc["params"].IsString());
    CHECK(std::string(doc["params"].GetString()) == r.params);
  }
  SECTION("an array is not an object") {
    r.params = "[1,2]";
    const rapidjson::Document doc = parse(ebats::result_to_json(r));
    CHECK(doc["params"].IsString());
  }
  SECTION("empty params become an empty string") {
    r.params.clear();
    const rapidjson::Document doc = parse(ebats::result_to_json(r));
    CHECK(std::string(doc["params"].GetString()).empty());
  }
}

TEST_CASE("result messages are escaped and come back unchanged", "[result]") {
  ebats::ResultRecord r = sample();
  static const char kMessage[] = "quote \" backslash \\ newline \n tab \t nul \0 bell \x07 end";
  r.message = std::string(kMessage, sizeof kMessage - 1);  // with the NUL in the middle
  const rapidjson::Document doc = parse(ebats::result_to_json(r));
  CHECK(std::string(doc["message"].GetString(), doc["message"].GetStringLength()) == r.message);
}

TEST_CASE("invalid UTF-8 in a result becomes U+FFFD, never invalid JSON", "[result]") {
  ebats::ResultRecord r = sample();
  r.message = "bad \xFF\xC3 end";
  r.host = "h\x80";
  r.params = "{\"a\":\"\xFF\"}";  // not valid JSON text, so it is embedded as a (cleaned) string
  const std::string json = ebats::result_to_json(r);
  const rapidjson::Document doc = parse(json);
  CHECK(std::string(doc["message"].GetString()) == "bad \xEF\xBF\xBD\xEF\xBF\xBD end");
  CHECK(std::string(doc["host"].GetString()) == "h\xEF\xBF\xBD");
  CHECK(std::string(doc["params"].GetString()) == "{\"a\":\"\xEF\xBF\xBD\"}");
}

TEST_CASE("result json: params marked compact are written as they are, not parsed again", "[result]") {
  ebats::ResultRecord r;
  r.topic = "demo";
  r.task_id = "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11";
  r.task = "closeOrder";
  r.params = "{\"order_id\":42,\"note\":\"x\"}";
  r.params_compact = true;
  r.status = "ok";
  const std::string line = ebats::result_to_json(r);
  CHECK(line.find(",\"params\":{\"order_id\":42,\"note\":\"x\"},") != std::string::npos);
  rapidjson::Document d;
  d.Parse(line.c_str());
  REQUIRE_FALSE(d.HasParseError());
  CHECK(d["params"]["order_id"].GetInt() == 42);
}
