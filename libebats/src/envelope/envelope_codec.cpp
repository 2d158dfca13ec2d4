// decode_envelope(), encode_envelope(), normalize_params(): the JSON wire
// format of docs/WIRE.md.
#include <cstdint>
#include <cstring>

#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>

#include "ebats/envelope.h"
#include "envelope/envelope_fields.h"
#include "envelope/envelope_splitter.h"
#include "envelope/json_io.h"
#include "envelope/utf8.h"

namespace ebats {
namespace {

// The DOM holds only the small top-level members (params go elsewhere); with
// the parser's, the DOM's and the writers' stacks (json::PoolAllocator) a
// buffer of this size on the stack usually serves the whole parse without a
// heap allocation (a task envelope took 6 mallocs for those stacks before).
constexpr size_t kDomStackBuffer = 6144;
// Initial stack sizes, in bytes; each grows (from the pool) when needed.
constexpr size_t kParserStack = 256;
constexpr size_t kDomStack = 512;

// normalize_params(): how much larger than the limit params may come, as
// given, for the whitespace compacting removes.
constexpr uint64_t kParamsWhitespaceFactor = 4;

std::string size_detail(uint64_t size, uint64_t limit) {
  return std::to_string(size) + " bytes, limit " + std::to_string(limit);
}

void write_history_entry(json::Writer& w, const HistoryEntry& h) {
  w.StartObject();
  w.Key("attempt");
  w.Uint(h.attempt);
  w.Key("status");
  json::write_string(w, h.status);
  w.Key("started_at");
  w.Int64(h.started_at);
  w.Key("finished_at");
  w.Int64(h.finished_at);
  w.Key("message");
  // Cut after cleaning, so the cut lands on a character boundary of valid text.
  const std::string message = replace_invalid_utf8(h.message);
  w.String(message.data(), static_cast<rapidjson::SizeType>(utf8_prefix_length(message, kMaxHistoryMessage)));
  w.Key("host");
  json::write_string(w, h.host);
  w.Key("pid");
  w.Int64(h.pid);
  w.EndObject();
}

// What one look over the bytes tells the parse: whether they are all ASCII
// and whether any is a backslash (the start of an escape).
struct InputShape {
  bool ascii = true;
  bool escapes = false;
};

InputShape shape_of(std::string_view bytes) {
  InputShape shape;
  shape.escapes = std::memchr(bytes.data(), '\\', bytes.size()) != nullptr;
  uint64_t high = 0;  // the top bits of every byte, eight at a time
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    high |= word;
  }
  for (; i < bytes.size(); ++i) high |= static_cast<unsigned char>(bytes[i]);
  shape.ascii = (high & 0x8080808080808080ull) == 0;
  return shape;
}

// One pass of `splitter` over `in`, filling `doc` with the known members; the
// parser's stack comes from `pool`.
// ASCII input is parsed without the per-character UTF-8 validation (it is
// valid UTF-8), which is most of a task envelope's decoding time; anything
// else is validated as it is read, and its errors say where.
rapidjson::ParseResult split(rapidjson::MemoryStream& in, EnvelopeSplitter& splitter, json::PoolDocument& doc,
                             json::PoolAllocator& pool, InputShape shape = InputShape{false, true}) {
  splitter.set_input_has_escapes(shape.escapes);
  rapidjson::ParseResult parsed;
  auto parse = [&](json::PoolDocument&) {
    json::PoolReader reader(&pool, kParserStack);
    parsed = shape.ascii ? reader.Parse<json::kReadFlags & ~rapidjson::kParseValidateEncodingFlag>(in, splitter)
                         : reader.Parse<json::kReadFlags>(in, splitter);
    return !parsed.IsError();
  };
  doc.Populate(parse);
  return parsed;
}

// Writes the members of `unknown` into the compact object `*out` before its
// closing brace, minus those the envelope already has (known names) and
// repeats: the members the splitter would route to unknown_members, so the
// envelope stays valid JSON that decode_envelope() accepts, whatever a
// caller put there. Nothing when `unknown` is not one JSON object.
void append_unknown_members(const std::string& unknown, std::string* out) {
  if (unknown.empty()) return;
  char dom_buffer[kDomStackBuffer];
  json::PoolAllocator pool(dom_buffer, sizeof dom_buffer);
  json::PoolDocument doc(&pool, kDomStack, &pool);
  std::string ignored_params;
  std::string members;
  EnvelopeSplitter splitter(&doc, &ignored_params, &members, &pool);
  rapidjson::MemoryStream in(unknown.data(), unknown.size());
  if (split(in, splitter, doc, pool).IsError() || in.Tell() != unknown.size() || members.size() <= 2) return;
  out->pop_back();  // the '}' of the known members
  out->push_back(',');
  out->append(members, 1, std::string::npos);  // the members and their '}'
}

}  // namespace

const char* decode_error_reason(DecodeError e) {
  switch (e) {
    case DecodeError::none: return "none";
    case DecodeError::too_large: return "too large";
    case DecodeError::malformed: return "malformed";
    case DecodeError::unsupported_version: return "unsupported version";
    case DecodeError::invalid: return "invalid";
  }
  return "unknown";
}

DecodeResult decode_envelope(std::string_view bytes, uint64_t max_bytes) {
  DecodeResult out;
  if (bytes.size() > max_bytes) {
    out.error = DecodeError::too_large;
    out.detail = size_detail(bytes.size(), max_bytes);
    return out;
  }

  Envelope& e = out.envelope;
  // Not reserved: small params (most) fit the string's own buffer, and
  // large ones grow by doubling.
  e.params.clear();
  char dom_buffer[kDomStackBuffer];
  json::PoolAllocator pool(dom_buffer, sizeof dom_buffer);
  json::PoolDocument doc(&pool, kDomStack, &pool);
  EnvelopeSplitter splitter(&doc, &e.params, &e.unknown_members, &pool);
  rapidjson::MemoryStream in(bytes.data(), bytes.size());
  const rapidjson::ParseResult parsed = split(in, splitter, doc, pool, shape_of(bytes));

  if (splitter.root_not_object()) {
    out.error = DecodeError::malformed;
    out.detail = std::string("the top-level value is ") + json::json_type_name(splitter.root_type()) +
                 ", expected an object";
    return out;
  }
  if (splitter.bad_string()) {
    out.error = DecodeError::malformed;
    out.detail = json::describe_parse_error(parsed.Offset(), json::kLoneSurrogateMessage);
    return out;
  }
  if (splitter.too_deep()) {
    out.error = DecodeError::malformed;
    out.detail = json::describe_parse_error(parsed.Offset(), json::kTooDeepMessage);
    return out;
  }
  if (parsed.IsError()) {
    out.error = DecodeError::malformed;
    out.detail = json::describe_parse_error(parsed);
    return out;
  }
  // The stream reports a NUL byte as the end of input; bytes after it are junk.
  if (in.Tell() != bytes.size()) {
    out.error = DecodeError::malformed;
    out.detail = json::describe_parse_error(in.Tell(), "NUL byte after the document.");
    return out;
  }
  out.error = read_envelope_fields(doc, splitter.params_seen(), &e, &out.detail);
  if (out.ok() && !splitter.repeated_unknown().empty()) {
    // Known members are checked the same way (read_envelope_fields()).
    out.error = DecodeError::invalid;
    out.detail = "field '" + splitter.repeated_unknown() + "': appears more than once";
  }
  return out;
}

std::string encode_envelope(const Envelope& e) {
  const bool is_task = e.kind == EnvelopeKind::task;
  std::string out;
  out.reserve(e.params.size() + 320 + (is_task ? e.history.size() * 160 : 0));
  json::StringSink sink(&out);
  json::Writer w(sink);
  w.StartObject();
  w.Key("v");
  w.Int(kEnvelopeVersion);
  w.Key("id");
  json::write_string(w, e.id);
  w.Key("kind");
  w.String(is_task ? "task" : "event");
  if (!is_task || !e.event.empty()) {
    w.Key("event");
    json::write_string(w, e.event);
  }
  if (is_task) {
    w.Key("task");
    json::write_string(w, e.task);
    w.Key("topic");
    json::write_string(w, e.topic);
  }
  w.Key("params");
  if (e.params.empty()) {
    w.RawValue("{}", 2, rapidjson::kObjectType);
  } else {
    w.RawValue(e.params.data(), e.params.size(), rapidjson::kObjectType);
  }
  w.Key("created_at");
  w.Int64(e.created_at);
  if (is_task) {
    w.Key("due_at");
    w.Int64(e.due_at);
    w.Key("attempt");
    w.Uint(e.attempt);
    w.Key("max_attempts");
    w.Uint(e.max_attempts);
  }
  if (!e.trace.empty()) {
    w.Key("trace");
    json::write_string(w, e.trace);
  }
  if (is_task) {
    if (!e.parent.empty()) {
      w.Key("parent");
      json::write_string(w, e.parent);
    }
    if (e.timeout_ms > 0) {
      w.Key("timeout_ms");
      w.Int64(e.timeout_ms);
    }
    if (e.has_retry) {
      w.Key("retry");
      w.StartObject();
      w.Key("backoff_ms");
      w.StartArray();
      for (int64_t ms : e.backoff_ms) w.Int64(ms);
      w.EndArray();
      if (e.jitter_pct > 0) {
        w.Key("jitter_pct");
        w.Uint(e.jitter_pct);
      }
      w.EndObject();
    }
    if (!e.history.empty()) {
      w.Key("history");
      w.StartArray();
      const size_t first = e.history.size() > kMaxHistory ? e.history.size() - kMaxHistory : 0;
      for (size_t i = first; i < e.history.size(); ++i) write_history_entry(w, e.history[i]);
      w.EndArray();
    }
  }
  w.EndObject();
  append_unknown_members(e.unknown_members, &out);
  return out;
}

Result<std::string> normalize_params(std::string_view json, uint64_t max_bytes) {
  // The limit is on the compact form; whitespace as given counts only past
  // four times it (ebatsctl --jsonl reads lines up to that), so no huge input is parsed.
  const uint64_t max_as_given = max_bytes > UINT64_MAX / kParamsWhitespaceFactor ? UINT64_MAX
                                                                                 : max_bytes * kParamsWhitespaceFactor;
  if (json.size() > max_as_given) {
    return Status::error(StatusCode::too_large, "params: " + std::to_string(json.size()) +
                                                    " bytes as given, whitespace included; limit " +
                                                    std::to_string(max_as_given) + " as given and " +
                                                    std::to_string(max_bytes) + " compacted");
  }
  std::string out;
  std::string detail;
  switch (json::compact_object(json, &out, &detail)) {
    case json::ObjectParse::ok: break;
    case json::ObjectParse::malformed: return Status::invalid("params: " + detail);
    case json::ObjectParse::not_object:
      return Status::invalid("params: " + detail + "; params must be one JSON object, like {\"order_id\":10042}");
  }
  if (out.size() > max_bytes) return Status::error(StatusCode::too_large, "params: " + size_detail(out.size(), max_bytes));
  return out;
}

}  // namespace ebats
