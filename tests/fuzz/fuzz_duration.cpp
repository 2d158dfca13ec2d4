// libFuzzer target: parse_duration() and parse_size() on any text, and
// format_duration() on the number the first 8 bytes spell.
//
// Beyond "no crash, no sanitizer report":
//  - an accepted duration lies in [0, kMaxDuration] (3650d) and is spelled
//    only with digits and unit letters;
//  - format_duration() of it parses back to it;
//  - every duration in [0, kMaxDuration] formats to text that parses back to it;
//  - a refusal says why (a non-empty message naming the text).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "ebats/duration.h"
#include "fuzz_check.h"

namespace {

bool is_duration_char(char c) { return (c >= '0' && c <= '9') || c == 'd' || c == 'h' || c == 'm' || c == 's'; }

void check_round_trip(ebats::Millis d) {
  const std::string text = ebats::format_duration(d);
  const ebats::Result<ebats::Millis> back = ebats::parse_duration(text);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back.value() == d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const ebats::Result<ebats::Millis> parsed = ebats::parse_duration(text);
  if (parsed.ok()) {
    const ebats::Millis d = parsed.value();
    FUZZ_CHECK(d.count() >= 0);
    FUZZ_CHECK(d <= ebats::kMaxDuration);
    for (char c : text) FUZZ_CHECK(is_duration_char(c));
    check_round_trip(d);
  } else {
    FUZZ_CHECK(parsed.status().message().find("invalid duration") == 0);
  }

  const ebats::Result<uint64_t> size_parsed = ebats::parse_size(text);
  if (!size_parsed.ok()) FUZZ_CHECK(!size_parsed.status().message().empty());

  if (size >= sizeof(int64_t)) {
    int64_t n;
    std::memcpy(&n, data, sizeof n);
    const uint64_t range = static_cast<uint64_t>(ebats::kMaxDuration.count()) + 1;
    check_round_trip(ebats::Millis(static_cast<int64_t>(static_cast<uint64_t>(n) % range)));
    FUZZ_CHECK(!ebats::format_duration(ebats::Millis(n)).empty());  // negative and INT64_MIN too
  }
  return 0;
}
