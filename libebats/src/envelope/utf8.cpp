#include "envelope/utf8.h"

namespace ebats {
namespace {

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence that starts at s[i], or 0 if none does.
size_t valid_sequence_length(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c0 = at(i);
  if (c0 < 0x80) return 1;
  const size_t left = s.size() - i;
  if (c0 >= 0xC2 && c0 <= 0xDF) return left >= 2 && is_continuation(at(i + 1)) ? 2 : 0;
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    if (left < 3) return 0;
    const unsigned char c1 = at(i + 1);
    const unsigned char lo = c0 == 0xE0 ? 0xA0 : 0x80;  // E0: no overlongs
    const unsigned char hi = c0 == 0xED ? 0x9F : 0xBF;  // ED: no surrogates
    return c1 >= lo && c1 <= hi && is_continuation(at(i + 2)) ? 3 : 0;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    if (left < 4) return 0;
    const unsigned char c1 = at(i + 1);
    const unsigned char lo = c0 == 0xF0 ? 0x90 : 0x80;  // F0: no overlongs
    const unsigned char hi = c0 == 0xF4 ? 0x8F : 0xBF;  // F4: nothing above U+10FFFF
    return c1 >= lo && c1 <= hi && is_continuation(at(i + 2)) && is_continuation(at(i + 3)) ? 4 : 0;
  }
  return 0;  // 80..C1 (continuation or overlong lead), F5..FF
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = valid_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string replace_invalid_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

size_t utf8_prefix_length(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s.size();
  size_t cut = max_bytes;
  // s[cut] is the first byte left out; back off while it continues a character.
  while (cut > 0 && is_continuation(static_cast<unsigned char>(s[cut]))) --cut;
  return cut;
}

}  // namespace ebats
