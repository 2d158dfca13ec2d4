// Metrics registry rendering (Prometheus text exposition format 0.0.4) and the
// /metrics HTTP server's answers to good and bad requests.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "metrics/http_server.h"
#include "metrics/registry.h"
#include "support/http_exchange.h"

using namespace ebats;
using namespace ebats::metrics;
using ebats::test::http_exchange;

namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

// Parses exposition text line by line as the format says: comments are
// "# HELP name text" / "# TYPE name type", samples "name{l="v",...} value".
// Fails the test on any line that does not parse.
std::vector<Sample> parse_exposition(const std::string& text, std::map<std::string, std::string>* types = nullptr) {
  static const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex sample(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+))");
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  REQUIRE((text.empty() || text.back() == '\n'));
  while (std::getline(in, line)) {
    INFO(line);
    std::smatch m;
    if (std::regex_match(line, help)) continue;
    if (std::regex_match(line, m, type)) {
      if (types) (*types)[m[1]] = m[2];
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample));
    Sample s{m[1], {}, m[4]};
    const std::string labels = m[3];
    size_t i = 0;
    while (i < labels.size()) {
      const size_t eq = labels.find("=\"", i);
      REQUIRE(eq != std::string::npos);
      const std::string name = labels.substr(i, eq - i);
      std::string value;
      size_t j = eq + 2;
      for (; j < labels.size() && labels[j] != '"'; ++j) {
        if (labels[j] == '\\') {
          REQUIRE(j + 1 < labels.size());
          const char e = labels[++j];
          REQUIRE((e == '\\' || e == '"' || e == 'n'));
          value += e == 'n' ? '\n' : e;
        } else {
          value += labels[j];
        }
      }
      REQUIRE(j < labels.size());
      s.labels[name] = value;
      i = j + 1;
      if (i < labels.size()) {
        REQUIRE(labels[i] == ',');
        ++i;
      }
    }
    out.push_back(s);
  }
  return out;
}


}  // namespace

TEST_CASE("metrics: counters and gauges render with HELP, TYPE and sorted label sets", "[metrics]") {
  Registry r;
  auto& c = r.counter("ebats_tasks_ok_total", "Tasks that returned ok.", {"topic", "task"});
  c.labels({"t", "b"}).inc(3);
  c.labels({"t", "a"}).inc();
  r.gauge("ebats_children", "Children.", {"state"}).labels({"busy"}).set(2.5);
  r.counter("ebats_plain_total", "No labels.").labels().inc(7);
  std::map<std::string, std::string> types;
  const std::string text = r.render();
  const auto samples = parse_exposition(text, &types);
  CHECK(types["ebats_tasks_ok_total"] == "counter");
  CHECK(types["ebats_children"] == "gauge");
  REQUIRE(samples.size() == 4);
  CHECK(samples[0].name == "ebats_tasks_ok_total");
  CHECK(samples[0].labels.at("task") == "a");
  CHECK(samples[0].value == "1");
  CHECK(samples[1].labels.at("task") == "b");
  CHECK(samples[1].value == "3");
  CHECK(samples[2].value == "2.5");
  CHECK(samples[3].name == "ebats_plain_total");
  CHECK(samples[3].value == "7");
  CHECK(text.find("ebats_plain_total 7\n") != std::string::npos);
  // The same name again is the same family.
  CHECK(&r.counter("ebats_plain_total", "ignored") == &r.counter("ebats_plain_total", "No labels."));
  CHECK_THROWS(r.gauge("ebats_plain_total", "a counter already"));
  CHECK_THROWS(r.counter("bad name", "x"));
  CHECK_THROWS(c.labels({"only-one"}));
}

TEST_CASE("metrics: past 10000 label sets a family counts new ones in one _overflow series", "[metrics]") {
  Registry r;
  auto& c = r.counter("x_total", "Many.", {"task", "topic"});
  for (int i = 0; i < 10000; ++i) c.labels({"t" + std::to_string(i), "a"}).inc();
  c.labels({"t0", "a"}).inc();  // an existing set still counts on its own
  for (int i = 0; i < 5; ++i) c.labels({"new" + std::to_string(i), "b"}).inc();
  const std::string text = r.render();
  CHECK(text.find("x_total{task=\"t0\",topic=\"a\"} 2\n") != std::string::npos);
  CHECK(text.find("x_total{task=\"_overflow\",topic=\"_overflow\"} 5\n") != std::string::npos);
  CHECK(text.find("new0") == std::string::npos);
  CHECK(parse_exposition(text).size() == 10001);
}

TEST_CASE("metrics: label values and help text are escaped", "[metrics]") {
  Registry r;
  r.counter("x_total", "line one\nback\\slash", {"v"}).labels({"a\"b\\c\nd"}).inc();
  const std::string text = r.render();
  CHECK(text.find("# HELP x_total line one\\nback\\\\slash\n") != std::string::npos);
  CHECK(text.find(R"(x_total{v="a\"b\\c\nd"} 1)") != std::string::npos);
  const auto samples = parse_exposition(text);
  REQUIRE(samples.size() == 1);
  CHECK(samples[0].labels.at("v") == "a\"b\\c\nd");
}

TEST_CASE("metrics: histogram buckets are cumulative and end in +Inf, with sum and count", "[metrics]") {
  Registry r;
  auto& h = r.histogram("d_seconds", "Durations.", {"topic"}, {0.1, 0.5, 1}).labels({"t"});
  for (double v : {0.05, 0.1, 0.2, 0.7, 3.0}) h.observe(v);
  const auto samples = parse_exposition(r.render());
  std::map<std::string, std::string> buckets;
  std::string sum, count;
  for (const auto& s : samples) {
    CHECK(s.labels.at("topic") == "t");
    if (s.name == "d_seconds_bucket") buckets[s.labels.at("le")] = s.value;
    if (s.name == "d_seconds_sum") sum = s.value;
    if (s.name == "d_seconds_count") count = s.value;
  }
  CHECK(buckets["0.1"] == "2");  // le: 0.1 itself is in the 0.1 bucket
  CHECK(buckets["0.5"] == "3");
  CHECK(buckets["1"] == "4");
  CHECK(buckets["+Inf"] == "5");
  CHECK(count == "5");
  CHECK(std::stod(sum) == Approx(4.05));
  CHECK(buckets.size() == 4);
  CHECK_THROWS(r.histogram("e_seconds", "x", {}, {1, 0.5}));
}

TEST_CASE("metrics: values format as the shortest text that reads back", "[metrics]") {
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(1) == "1");
  CHECK(format_value(0.0025) == "0.0025");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(1.0 / 0.0) == "+Inf");
  CHECK(format_value(-1.0 / 0.0) == "-Inf");
  CHECK(std::stod(format_value(2.0 / 3.0)) == 2.0 / 3.0);
}

TEST_CASE("metrics: listen addresses parse, and bad ones are refused", "[metrics]") {
  auto a = parse_listen_address("127.0.0.1:9464");
  REQUIRE(a.ok());
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 9464);
  auto v6 = parse_listen_address("[::1]:0");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 0);
  auto bare = parse_listen_address(":9464");
  REQUIRE(bare.ok());
  CHECK(bare->host == "127.0.0.1");
  CHECK_FALSE(parse_listen_address("9464").ok());
  CHECK_FALSE(parse_listen_address("::1:9464").ok());
  CHECK_FALSE(parse_listen_address("127.0.0.1:65536").ok());
  CHECK_FALSE(parse_listen_address("127.0.0.1:").ok());
  CHECK_FALSE(parse_listen_address("127.0.0.1:9x").ok());
}

TEST_CASE("metrics: the HTTP server answers GET /metrics and refuses other requests without stopping", "[metrics]") {
  Registry r;
  auto& c = r.counter("ebats_test_total", "A test counter.");
  c.labels().inc(41);
  Logger log("metrics-test", LogOptions{});
  auto server = MetricsServer::start({"127.0.0.1", 0}, r, log);
  REQUIRE(server.ok());
  const uint16_t port = (*server)->port();
  REQUIRE(port != 0);
  CHECK((*server)->address() == "127.0.0.1:" + std::to_string(port));

  c.labels().inc();
  std::string res = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(res.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(res.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(res.find("\r\n\r\n# HELP ebats_test_total A test counter.\n# TYPE ebats_test_total counter\n"
                 "ebats_test_total 42\n") != std::string::npos);

  CHECK(http_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 404", 0) == 0);
  const std::string post = http_exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  CHECK(post.rfind("HTTP/1.1 405", 0) == 0);
  CHECK(post.find("Allow: GET, HEAD") != std::string::npos);
  CHECK(http_exchange(port, "GARBAGE\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);
  // A 1 MB header: refused (the server may close before reading it all, so
  // the answer may be lost; it must still serve the next scrape).
  const std::string big = http_exchange(port, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(1 << 20, 'a') + "\r\n\r\n");
  CHECK(big.find("200 OK") == std::string::npos);
  // Half a request, then the client stops sending: 400, or nothing.
  const std::string half = http_exchange(port, "GET /metr");
  CHECK((half.empty() || half.rfind("HTTP/1.1 400", 0) == 0));
  // A body larger than allowed.
  CHECK(http_exchange(port, "GET /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'b'))
            .find("200 OK") == std::string::npos);

  res = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(res.find("ebats_test_total 42\n") != std::string::npos);
  // Scrapes from several threads while the counter moves.
  std::vector<std::thread> scrapers;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    scrapers.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (http_exchange(port, "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0) ++good;
      }
    });
  }
  for (int i = 0; i < 1000; ++i) c.labels().inc();
  for (auto& t : scrapers) t.join();
  CHECK(good == 20);
  CHECK(http_exchange(port, "GET /metrics HTTP/1.1\r\n\r\n").find("ebats_test_total 1042\n") != std::string::npos);
  (*server)->stop();
  (*server)->stop();  // twice is fine; the destructor stops again
}

TEST_CASE("metrics: a port in use is an error from start", "[metrics]") {
  Registry r;
  Logger log("metrics-test", LogOptions{});
  auto first = MetricsServer::start({"127.0.0.1", 0}, r, log);
  REQUIRE(first.ok());
  auto second = MetricsServer::start({"127.0.0.1", (*first)->port()}, r, log);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().message().find("cannot listen") != std::string::npos);
}
