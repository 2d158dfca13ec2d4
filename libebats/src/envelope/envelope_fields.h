// The top-level members of an envelope, and their validation into an
// Envelope (rules in docs/WIRE.md). Used by decode_envelope(); pure.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ebats/envelope.h"

namespace ebats {

enum class EnvelopeField : uint8_t {
  v, id, kind, event, task, topic, params, created_at, due_at, attempt, max_attempts,
  trace, parent, timeout_ms, retry, history,
};
constexpr size_t kEnvelopeFieldCount = 16;

// The field whose wire name is `name`; nullopt for members this build does not know.
std::optional<EnvelopeField> envelope_field_named(std::string_view name);
const char* envelope_field_name(EnvelopeField f);

// What the one-pass reader learned about "params" (which it does not put in the DOM).
struct ParamsSeen {
  int count = 0;                                    // how many "params" members the root had
  rapidjson::Type type = rapidjson::kNullType;      // JSON type of the first one
};

// Validates `root` (an object holding the known members other than params) and
// fills *e from it; e->params must already hold the params text.
// On failure returns invalid or unsupported_version and sets *detail, naming
// the field: "field 'attempt': expected a non-negative integer, found string \"1\"".
DecodeError read_envelope_fields(const rapidjson::Value& root, const ParamsSeen& params, Envelope* e,
                                 std::string* detail);

}  // namespace ebats
