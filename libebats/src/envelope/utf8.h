// UTF-8 checks for text that ebats writes into JSON (envelopes, result records).
//
// RapidJSON's Writer copies string bytes as they are, so text that did not come
// from a validated parse (handler messages, host names, ...) is cleaned here
// first: invalid UTF-8 in a JSON document would make every reader refuse it.
// Validity follows RFC 3629: no overlong forms, no UTF-16 surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF. All functions are pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ebats {

bool is_valid_utf8(std::string_view s);

// `s` with every byte that does not start a valid sequence replaced by U+FFFD
// (EF BF BD). Returns `s` unchanged when it is already valid.
std::string replace_invalid_utf8(std::string_view s);

// The length of the longest prefix of `s` that is at most `max_bytes` long and
// does not end inside a multi-byte character.
// REQUIRES: s is valid UTF-8 (otherwise the cut is only byte-exact).
size_t utf8_prefix_length(std::string_view s, size_t max_bytes);

}  // namespace ebats
