// Durations ("2h10m") and sizes ("1MiB") as written in YAML and on the command line.
#include <catch2/catch.hpp>

#include <string>

#include "ebats/duration.h"

namespace {

int64_t ms_of(const char* text) {
  const ebats::Result<ebats::Millis> r = ebats::parse_duration(text);
  INFO("parse_duration(\"" << text << "\") -> " << r.status().to_string());
  REQUIRE(r.ok());
  return r->count();
}

std::string error_of(const char* text) {
  const ebats::Result<ebats::Millis> r = ebats::parse_duration(text);
  INFO("parse_duration(\"" << text << "\") unexpectedly gave " << (r.ok() ? r->count() : 0) << "ms");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ebats::StatusCode::invalid_argument);
  return r.status().message();
}

}  // namespace

TEST_CASE("parse_duration accepts every unit and combinations, largest first", "[duration]") {
  CHECK(ms_of("250ms") == 250);
  CHECK(ms_of("10s") == 10'000);
  CHECK(ms_of("5m") == 300'000);
  CHECK(ms_of("1h") == 3'600'000);
  CHECK(ms_of("1d") == 86'400'000);
  CHECK(ms_of("2h10m") == 7'800'000);
  CHECK(ms_of("1d2h3m4s5ms") == 86'400'000 + 7'200'000 + 180'000 + 4'000 + 5);
  CHECK(ms_of("1m5ms") == 60'005);  // "m" then "ms": minutes, then milliseconds
  CHECK(ms_of("0s") == 0);
  CHECK(ms_of("0ms") == 0);
  CHECK(ms_of("007s") == 7'000);
  CHECK(ms_of("90m") == 5'400'000);  // a group may exceed the next unit
}

TEST_CASE("parse_duration rejects bad forms with a message that says why", "[duration]") {
  CHECK(error_of("10") == "invalid duration '10': a number needs a unit (ms, s, m, h, d), e.g. 10s");
  CHECK_THAT(error_of(""), Catch::Contains("invalid duration '': empty"));
  CHECK_THAT(error_of("-1s"), Catch::Contains("negative"));
  CHECK_THAT(error_of("10x"), Catch::Contains("unknown unit 'x'"));
  CHECK_THAT(error_of("10sec"), Catch::Contains("unknown unit 'sec'"));
  CHECK_THAT(error_of("5m10h"), Catch::Contains("unit 'h' comes after the smaller unit 'm'"));
  CHECK_THAT(error_of("5s5s"), Catch::Contains("unit 's' appears twice"));
  CHECK_THAT(error_of("1.5s"), Catch::Contains("fractions are not allowed"));
  CHECK_THAT(error_of("10 s"), Catch::Contains("unexpected ' '"));
  CHECK_THAT(error_of(" 10s"), Catch::Contains("expected a number"));
  CHECK_THAT(error_of("s"), Catch::Contains("expected a number"));
  CHECK_THAT(error_of("+5s"), Catch::Contains("expected a number"));
  CHECK_THAT(error_of("10S"), Catch::Contains("unknown unit 'S'"));
}

TEST_CASE("parse_duration takes at most 10 years, and nothing that overflows", "[duration]") {
  // One maximum everywhere: a worker timeout of 106752d (about 2^63 ns)
  // used to pass and then kill every task at once.
  CHECK(ms_of("3650d") == int64_t{3650} * 86'400'000);
  CHECK(ms_of("315360000000ms") == int64_t{3650} * 86'400'000);
  CHECK_THAT(error_of("3650d1ms"), Catch::Contains("too large (the maximum is 3650d (10 years))"));
  CHECK_THAT(error_of("3651d"), Catch::Contains("too large"));
  CHECK_THAT(error_of("106752d"), Catch::Contains("too large"));
  CHECK_THAT(error_of("9223372036854775807ms"), Catch::Contains("too large"));
  CHECK_THAT(error_of("9223372036854775808ms"), Catch::Contains("too large"));
  CHECK_THAT(error_of("99999999999999999999999s"), Catch::Contains("too large"));
  CHECK_THAT(error_of("106751991167d7h12m55s808ms"), Catch::Contains("too large"));
}

TEST_CASE("format_duration gives the shortest canonical spelling and round-trips", "[duration]") {
  using ebats::Millis;
  CHECK(ebats::format_duration(Millis(7'800'000)) == "2h10m");
  CHECK(ebats::format_duration(Millis(0)) == "0ms");
  CHECK(ebats::format_duration(Millis(250)) == "250ms");
  CHECK(ebats::format_duration(Millis(5'400'000)) == "1h30m");
  CHECK(ebats::format_duration(Millis(86'400'000 + 1)) == "1d1ms");
  CHECK(ebats::format_duration(Millis(-10'000)) == "-10s");
  for (int64_t ms : {int64_t{1}, int64_t{999}, int64_t{61'001}, int64_t{7'800'000}, int64_t{123'456'789'012},
                     ebats::kMaxDuration.count()}) {
    const std::string text = ebats::format_duration(Millis(ms));
    INFO(text);
    CHECK(ms_of(text.c_str()) == ms);
  }
  CHECK(ebats::format_duration(Millis(INT64_MIN)).front() == '-');
  CHECK(ebats::format_duration(Millis(INT64_MAX)) == "106751991167d7h12m55s807ms");
}

TEST_CASE("parse_size accepts B, KiB, MiB and GiB", "[duration]") {
  CHECK(*ebats::parse_size("0B") == 0);
  CHECK(*ebats::parse_size("4096B") == 4096);
  CHECK(*ebats::parse_size("4KiB") == 4096);
  CHECK(*ebats::parse_size("1MiB") == 1'048'576);
  CHECK(*ebats::parse_size("2GiB") == 2'147'483'648ULL);
}

TEST_CASE("parse_size rejects bare numbers, decimal units, fractions and overflow", "[duration]") {
  const auto error_of_size = [](const char* text) {
    const ebats::Result<uint64_t> r = ebats::parse_size(text);
    INFO(text);
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  CHECK(error_of_size("1024") == "invalid size '1024': a number needs a unit (B, KiB, MiB, GiB), e.g. 1024B");
  CHECK_THAT(error_of_size("1KB"), Catch::Contains("unknown unit 'KB'"));
  CHECK_THAT(error_of_size("1kib"), Catch::Contains("unknown unit 'kib'"));
  CHECK_THAT(error_of_size("1.5MiB"), Catch::Contains("fractions"));
  CHECK_THAT(error_of_size("-1B"), Catch::Contains("negative"));
  CHECK_THAT(error_of_size(""), Catch::Contains("empty"));
  CHECK_THAT(error_of_size("MiB"), Catch::Contains("expected a number"));
  CHECK_THAT(error_of_size("1MiB1KiB"), Catch::Contains("unknown unit 'MiB1KiB'"));
  CHECK_THAT(error_of_size("17179869184GiB"), Catch::Contains("too large"));
  CHECK_THAT(error_of_size("99999999999999999999B"), Catch::Contains("too large"));
}
