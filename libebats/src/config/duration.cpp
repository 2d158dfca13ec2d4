// Durations ("2h10m") and sizes ("1MiB"): parsing and canonical formatting.
#include "ebats/duration.h"

#include <cstdint>
#include <limits>
#include <string>

namespace ebats {
namespace {

struct Unit {
  std::string_view name;
  int64_t ms;
};
// Largest first: a duration must list its groups in this order.
constexpr Unit kDurationUnits[] = {
    {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1},
};
constexpr int kNoUnit = -1;

constexpr std::string_view kDurationHint = "use <integer><unit> groups, largest unit first, units ms s m h d, e.g. 250ms, 10s, 2h10m";

Status duration_error(std::string_view text, const std::string& why) {
  return Status::invalid("invalid duration '" + std::string(text) + "': " + why);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Reads a run of digits at text[pos] into *value; false on overflow of `limit`.
bool read_number(std::string_view text, size_t* pos, uint64_t limit, uint64_t* value) {
  uint64_t v = 0;
  bool overflow = false;
  while (*pos < text.size() && is_digit(text[*pos])) {
    const uint64_t digit = static_cast<uint64_t>(text[*pos] - '0');
    if (v > (limit - digit) / 10) overflow = true;
    if (!overflow) v = v * 10 + digit;
    ++*pos;
  }
  *value = v;
  return !overflow;
}

int find_duration_unit(std::string_view name) {
  for (int i = 0; i < static_cast<int>(std::size(kDurationUnits)); ++i) {
    if (kDurationUnits[i].name == name) return i;
  }
  return kNoUnit;
}

}  // namespace

Result<Millis> parse_duration(std::string_view text) {
  if (text.empty()) return duration_error(text, "empty; " + std::string(kDurationHint));
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t total = 0;
  int previous_unit = kNoUnit;
  size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c == '-') return duration_error(text, "negative durations are not allowed");
    if (!is_digit(c)) {
      return duration_error(text, "expected a number at '" + std::string(text.substr(pos)) + "'; " +
                                      std::string(kDurationHint));
    }
    uint64_t number = 0;
    if (!read_number(text, &pos, kMax, &number)) {
      return duration_error(text, std::string("too large (the maximum is ") + kMaxDurationText + ")");
    }
    if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
      return duration_error(text, "fractions are not allowed; use a smaller unit, e.g. 1s500ms instead of 1.5s");
    }
    const size_t unit_begin = pos;
    while (pos < text.size() && is_letter(text[pos])) ++pos;
    const std::string_view unit_name = text.substr(unit_begin, pos - unit_begin);
    if (unit_name.empty()) {
      if (pos == text.size()) {
        return duration_error(text, "a number needs a unit (ms, s, m, h, d), e.g. " + std::to_string(number) + "s");
      }
      return duration_error(text, "unexpected '" + std::string(1, text[pos]) + "'; " + std::string(kDurationHint));
    }
    const int unit = find_duration_unit(unit_name);
    if (unit == kNoUnit) {
      return duration_error(text, "unknown unit '" + std::string(unit_name) + "' (use ms, s, m, h or d)");
    }
    if (previous_unit != kNoUnit && unit <= previous_unit) {
      const std::string why = unit == previous_unit ? "unit '" + std::string(unit_name) + "' appears twice"
                                                    : "unit '" + std::string(unit_name) + "' comes after the smaller unit '" +
                                                          std::string(kDurationUnits[previous_unit].name) + "'";
      return duration_error(text, why + "; write the largest unit first, e.g. 2h10m");
    }
    previous_unit = unit;
    const uint64_t unit_ms = static_cast<uint64_t>(kDurationUnits[unit].ms);
    if (number > (kMax - total) / unit_ms) {
      return duration_error(text, std::string("too large (the maximum is ") + kMaxDurationText + ")");
    }
    total += number * unit_ms;
  }
  if (total > static_cast<uint64_t>(kMaxDuration.count())) {
    return duration_error(text, std::string("too large (the maximum is ") + kMaxDurationText + ")");
  }
  return Millis(static_cast<int64_t>(total));
}

std::string format_duration(Millis d) {
  const int64_t count = d.count();
  if (count == 0) return "0ms";
  std::string out;
  // Magnitude as unsigned so that INT64_MIN formats too.
  uint64_t rest = count < 0 ? 0 - static_cast<uint64_t>(count) : static_cast<uint64_t>(count);
  if (count < 0) out += '-';
  for (const Unit& unit : kDurationUnits) {
    const uint64_t unit_ms = static_cast<uint64_t>(unit.ms);
    const uint64_t n = rest / unit_ms;
    if (n == 0) continue;
    out += std::to_string(n);
    out += unit.name;
    rest -= n * unit_ms;
  }
  return out;
}

Result<uint64_t> parse_size(std::string_view text) {
  struct SizeUnit {
    std::string_view name;
    uint64_t bytes;
  };
  static constexpr SizeUnit kSizeUnits[] = {
      {"B", 1}, {"KiB", uint64_t{1} << 10}, {"MiB", uint64_t{1} << 20}, {"GiB", uint64_t{1} << 30}};
  const auto error = [&](const std::string& why) {
    return Status::invalid("invalid size '" + std::string(text) + "': " + why);
  };
  if (text.empty()) return error("empty; use <integer><unit> with unit B, KiB, MiB or GiB, e.g. 4KiB");
  if (text[0] == '-') return error("negative sizes are not allowed");
  if (!is_digit(text[0])) return error("expected a number; use <integer><unit> with unit B, KiB, MiB or GiB, e.g. 4KiB");
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  size_t pos = 0;
  uint64_t number = 0;
  if (!read_number(text, &pos, kMax, &number)) return error("too large");
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    return error("fractions are not allowed; use a smaller unit, e.g. 1536KiB instead of 1.5MiB");
  }
  const std::string_view unit_name = text.substr(pos);
  if (unit_name.empty()) {
    return error("a number needs a unit (B, KiB, MiB, GiB), e.g. " + std::to_string(number) + "B");
  }
  for (const SizeUnit& unit : kSizeUnits) {
    if (unit.name != unit_name) continue;
    if (number > kMax / unit.bytes) return error("too large");
    return number * unit.bytes;
  }
  return error("unknown unit '" + std::string(unit_name) + "' (use B, KiB, MiB or GiB; 1KiB = 1024B)");
}

}  // namespace ebats
