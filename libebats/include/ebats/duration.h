// Durations and sizes as written in YAML and on the command line.
//
// A duration is one or more <integer><unit> groups, units ms s m h d, largest
// unit first, no spaces: "250ms", "10s", "5m", "1h", "2h10m", "1d". A bare number
// ("10") is rejected as ambiguous; so are negative values, empty strings,
// repeated or out-of-order units, and values longer than kMaxDuration.
// A size is <integer><unit> with unit B, KiB, MiB or GiB ("1MiB").
// All functions are pure and thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "ebats/status.h"

namespace ebats {

using Millis = std::chrono::milliseconds;

// The longest duration ebats takes anywhere (config, ebatsctl, the C and C++
// APIs): 10 years. Times built from it (now + delay, a deadline, a lease)
// stay far from overflowing 64-bit milliseconds and nanoseconds.
constexpr Millis kMaxDuration{int64_t{3650} * 86'400'000};
constexpr const char* kMaxDurationText = "3650d (10 years)";

// On failure the message says what was expected, e.g.
// "invalid duration '10': a number needs a unit (ms, s, m, h, d), e.g. 10s".
EBATS_EXPORT Result<Millis> parse_duration(std::string_view text);
// The shortest canonical spelling: 7800000ms -> "2h10m", 0 -> "0ms".
EBATS_EXPORT std::string format_duration(Millis d);
EBATS_EXPORT Result<uint64_t> parse_size(std::string_view text);

}  // namespace ebats
