#include "envelope/envelope_fields.h"

#include <array>
#include <charconv>
#include <cstring>
#include <limits>

#include "ebats/duration.h"
#include "ebats/retry.h"
#include "envelope/json_io.h"
#include "envelope/utf8.h"

namespace ebats {
namespace {

using rapidjson::Value;

constexpr std::array<const char*, kEnvelopeFieldCount> kFieldNames = {
    "v", "id", "kind", "event", "task", "topic", "params", "created_at", "due_at", "attempt", "max_attempts",
    "trace", "parent", "timeout_ms", "retry", "history",
};

constexpr uint32_t kMaxAttemptValue = 1'000'000;
constexpr size_t kMaxTraceBytes = 128;
constexpr size_t kMaxHistoryStatusBytes = 32;
constexpr size_t kQuoteBytes = 64;  // how much of a bad string value a message shows

// `"text"` for messages: at most kQuoteBytes, quotes, backslashes and control
// bytes escaped, so a detail is always one printable line.
std::string quote(std::string_view s) {
  const size_t keep = utf8_prefix_length(s, kQuoteBytes);
  std::string out = "\"";
  for (size_t i = 0; i < keep; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0x0F];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += keep < s.size() ? "\"..." : "\"";
  return out;
}

std::string format_double(double d) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // 1.0 must not read as the integer 1
  return s;
}

// How a found value is named in messages: string "5", -3, 1.5, true, null, object, array.
std::string describe(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kStringType: return "string " + quote(std::string_view(v.GetString(), v.GetStringLength()));
    case rapidjson::kNumberType:
      if (v.IsUint64()) return std::to_string(v.GetUint64());
      if (v.IsInt64()) return std::to_string(v.GetInt64());
      return format_double(v.GetDouble());
    case rapidjson::kTrueType: return "true";
    case rapidjson::kFalseType: return "false";
    default: return json::json_type_name(v.GetType());
  }
}

std::string_view view(const Value& v) { return std::string_view(v.GetString(), v.GetStringLength()); }

// Field checks. Each returns false after writing the detail.
class Checker {
 public:
  explicit Checker(std::string* detail) : detail_(detail) {}

  bool fail(std::string_view field, const std::string& what) {
    *detail_ = "field '";
    detail_->append(field);
    *detail_ += "': ";
    *detail_ += what;
    return false;
  }

  bool non_negative_int64(std::string_view field, const Value& v, int64_t* out) {
    if (!v.IsInt64() || v.GetInt64() < 0) {
      return fail(field, "expected a non-negative integer, found " + describe(v));
    }
    *out = v.GetInt64();
    return true;
  }

  // A time: ms since the epoch, at most kMaxEpochMs (the year 9999).
  bool epoch_ms(std::string_view field, const Value& v, int64_t* out) {
    if (!non_negative_int64(field, v, out)) return false;
    if (*out > kMaxEpochMs) {
      return fail(field, "a time after the year 9999 (" + std::to_string(*out) + " ms since the epoch; at most " +
                             std::to_string(kMaxEpochMs) + ")");
    }
    return true;
  }

  // A duration in ms, at most kMaxDuration (as everywhere else in ebats).
  bool duration_ms(std::string_view field, const Value& v, int64_t* out) {
    if (!non_negative_int64(field, v, out)) return false;
    if (*out > kMaxDuration.count()) {
      return fail(field, std::to_string(*out) + " ms is longer than the longest duration, " + kMaxDurationText + " (" +
                             std::to_string(kMaxDuration.count()) + " ms)");
    }
    return true;
  }

  bool uint32_in(std::string_view field, const Value& v, uint32_t min, uint32_t max, uint32_t* out) {
    if (!v.IsUint64() || v.GetUint64() < min || v.GetUint64() > max) {
      return fail(field, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                             ", found " + describe(v));
    }
    *out = static_cast<uint32_t>(v.GetUint64());
    return true;
  }

  bool string(std::string_view field, const Value& v, std::string* out) {
    if (!v.IsString()) return fail(field, "expected a string, found " + describe(v));
    out->assign(v.GetString(), v.GetStringLength());
    return true;
  }

  bool uuid(std::string_view field, const Value& v, std::string* out) {
    if (!v.IsString() || !is_valid_uuid(view(v))) {
      return fail(field, "expected a lowercase UUID (8-4-4-4-12 hex digits, like "
                         "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11), found " + describe(v));
    }
    out->assign(v.GetString(), v.GetStringLength());
    return true;
  }

  bool name(std::string_view field, const Value& v, bool (*valid)(std::string_view), const char* rule,
            std::string* out) {
    if (!v.IsString() || !valid(view(v))) {
      return fail(field, std::string("expected a name matching ") + rule + ", found " + describe(v));
    }
    out->assign(v.GetString(), v.GetStringLength());
    return true;
  }

 private:
  std::string* detail_;
};

constexpr const char* kHandlerNameRule = "[A-Za-z0-9_.:-]{1,128}";
constexpr const char* kTopicRule = "[A-Za-z0-9_-]{1,64}";

bool read_retry(Checker& c, const Value& v, Envelope* e) {
  if (!v.IsObject()) return c.fail("retry", "expected an object {\"backoff_ms\":[...]}, found " + describe(v));
  const Value* backoff = nullptr;
  const Value* jitter = nullptr;
  for (const auto& m : v.GetObject()) {
    if (view(m.name) == "backoff_ms") {
      backoff = &m.value;
    } else if (view(m.name) == "jitter_pct") {
      jitter = &m.value;
    } else {
      return c.fail("retry", "unknown member " + quote(view(m.name)) +
                                 "; this build knows only {\"backoff_ms\":[...],\"jitter_pct\":N}");
    }
  }
  if (backoff == nullptr) return c.fail("retry.backoff_ms", "required when 'retry' is present");
  if (!backoff->IsArray()) return c.fail("retry.backoff_ms", "expected an array of milliseconds, found " + describe(*backoff));
  e->has_retry = true;
  e->backoff_ms.clear();
  e->backoff_ms.reserve(backoff->Size());
  for (rapidjson::SizeType i = 0; i < backoff->Size(); ++i) {
    const Value& step = (*backoff)[i];
    // The common case without building the field's name, which only an error needs.
    if (step.IsInt64() && step.GetInt64() >= 0 && step.GetInt64() <= kMaxDuration.count()) {
      e->backoff_ms.push_back(step.GetInt64());
      continue;
    }
    int64_t ms = 0;
    if (!c.duration_ms("retry.backoff_ms[" + std::to_string(i) + "]", step, &ms)) return false;
    e->backoff_ms.push_back(ms);
  }
  e->jitter_pct = 0;
  if (jitter != nullptr && !c.uint32_in("retry.jitter_pct", *jitter, 0, kMaxJitterPct, &e->jitter_pct)) return false;
  return true;
}

bool read_history_entry(Checker& c, const std::string& at, const Value& v, HistoryEntry* h) {
  if (!v.IsObject()) return c.fail(at, "expected an object {\"attempt\":..,\"status\":..}, found " + describe(v));
  const auto member = [&](const char* name) -> const Value* {
    const auto it = v.FindMember(name);
    return it == v.MemberEnd() ? nullptr : &it->value;
  };
  const Value* attempt = member("attempt");
  if (attempt == nullptr) return c.fail(at + ".attempt", "required");
  if (!c.uint32_in(at + ".attempt", *attempt, 0, kMaxAttemptValue, &h->attempt)) return false;
  const Value* status = member("status");
  if (status == nullptr) return c.fail(at + ".status", "required");
  if (!status->IsString() || status->GetStringLength() == 0 || status->GetStringLength() > kMaxHistoryStatusBytes) {
    return c.fail(at + ".status", "expected a non-empty string of at most " + std::to_string(kMaxHistoryStatusBytes) +
                                      " bytes (ok, retry, failed, dead, replayed), found " + describe(*status));
  }
  h->status.assign(status->GetString(), status->GetStringLength());
  if (const Value* x = member("started_at"); x && !c.epoch_ms(at + ".started_at", *x, &h->started_at)) return false;
  if (const Value* x = member("finished_at"); x && !c.epoch_ms(at + ".finished_at", *x, &h->finished_at)) return false;
  if (const Value* x = member("message"); x && !c.string(at + ".message", *x, &h->message)) return false;
  if (const Value* x = member("host"); x && !c.string(at + ".host", *x, &h->host)) return false;
  if (const Value* x = member("pid"); x && !c.non_negative_int64(at + ".pid", *x, &h->pid)) return false;
  return true;
}

bool read_history(Checker& c, const Value& v, Envelope* e) {
  if (!v.IsArray()) return c.fail("history", "expected an array of attempt records, found " + describe(v));
  e->history.clear();
  e->history.resize(v.Size());
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    if (!read_history_entry(c, "history[" + std::to_string(i) + "]", v[i], &e->history[i])) return false;
  }
  return true;
}

// The checks after the version: everything except v.
bool read_v1_fields(Checker& c, const std::array<const Value*, kEnvelopeFieldCount>& f, const ParamsSeen& params,
                    Envelope* e) {
  const auto at = [&](EnvelopeField field) { return f[static_cast<size_t>(field)]; };
  using F = EnvelopeField;

  if (at(F::id) == nullptr) return c.fail("id", "required (a lowercase UUID)");
  if (!c.uuid("id", *at(F::id), &e->id)) return false;

  const Value* kind = at(F::kind);
  if (kind == nullptr) return c.fail("kind", "required (\"event\" or \"task\")");
  if (kind->IsString() && view(*kind) == "event") {
    e->kind = EnvelopeKind::event;
  } else if (kind->IsString() && view(*kind) == "task") {
    e->kind = EnvelopeKind::task;
  } else {
    return c.fail("kind", "expected \"event\" or \"task\", found " + describe(*kind));
  }
  const bool is_task = e->kind == EnvelopeKind::task;

  // Fields that only a task carries: an event holding one was probably meant to be a task.
  if (!is_task) {
    for (F task_only : {F::task, F::topic, F::due_at, F::attempt, F::max_attempts, F::parent, F::timeout_ms, F::retry,
                        F::history}) {
      if (at(task_only) != nullptr) {
        return c.fail(envelope_field_name(task_only), "only allowed when kind is \"task\" (this envelope is an event)");
      }
    }
  }

  if (const Value* v = at(F::event)) {
    if (!c.name("event", *v, is_valid_event_name, kHandlerNameRule, &e->event)) return false;
  } else if (!is_task) {
    return c.fail("event", "required in an event (the event name, " + std::string(kHandlerNameRule) + ")");
  }

  if (is_task) {
    if (at(F::task) == nullptr) return c.fail("task", "required in a task (the handler name)");
    if (!c.name("task", *at(F::task), is_valid_task_name, kHandlerNameRule, &e->task)) return false;
    if (at(F::topic) == nullptr) return c.fail("topic", "required in a task");
    if (!c.name("topic", *at(F::topic), is_valid_topic, kTopicRule, &e->topic)) return false;
  }

  if (params.count == 0) return c.fail("params", "required (a JSON object, {} when there is nothing to pass)");
  if (params.count > 1) return c.fail("params", "appears more than once");
  if (params.type != rapidjson::kObjectType) {
    return c.fail("params", std::string("expected an object, found ") + json::json_type_name(params.type));
  }

  if (at(F::created_at) == nullptr) return c.fail("created_at", "required (ms since the Unix epoch)");
  if (!c.epoch_ms("created_at", *at(F::created_at), &e->created_at)) return false;

  if (is_task) {
    if (at(F::due_at) == nullptr) return c.fail("due_at", "required in a task (ms since the Unix epoch)");
    if (!c.epoch_ms("due_at", *at(F::due_at), &e->due_at)) return false;
    if (at(F::attempt) == nullptr) return c.fail("attempt", "required in a task (0 on the first run)");
    if (!c.uint32_in("attempt", *at(F::attempt), 0, kMaxAttemptValue, &e->attempt)) return false;
    if (at(F::max_attempts) == nullptr) return c.fail("max_attempts", "required in a task (1 + retries allowed)");
    if (!c.uint32_in("max_attempts", *at(F::max_attempts), 1, std::numeric_limits<uint32_t>::max(),
                     &e->max_attempts)) {
      return false;
    }
  }

  if (const Value* v = at(F::trace)) {
    if (!c.string("trace", *v, &e->trace)) return false;
    if (e->trace.size() > kMaxTraceBytes) {
      return c.fail("trace", std::to_string(e->trace.size()) + " bytes, limit " + std::to_string(kMaxTraceBytes));
    }
  }

  if (is_task) {
    if (const Value* v = at(F::parent); v && !c.uuid("parent", *v, &e->parent)) return false;
    if (const Value* v = at(F::timeout_ms); v && !c.duration_ms("timeout_ms", *v, &e->timeout_ms)) return false;
    if (const Value* v = at(F::retry); v && !read_retry(c, *v, e)) return false;
    if (const Value* v = at(F::history); v && !read_history(c, *v, e)) return false;
  }
  return true;
}

}  // namespace

std::optional<EnvelopeField> envelope_field_named(std::string_view name) {
  for (size_t i = 0; i < kFieldNames.size(); ++i) {
    if (name == kFieldNames[i]) return static_cast<EnvelopeField>(i);
  }
  return std::nullopt;
}

const char* envelope_field_name(EnvelopeField f) { return kFieldNames[static_cast<size_t>(f)]; }

DecodeError read_envelope_fields(const Value& root, const ParamsSeen& params, Envelope* e, std::string* detail) {
  Checker c(detail);
  std::array<const Value*, kEnvelopeFieldCount> fields{};
  const Value* duplicate = nullptr;
  bool duplicate_v = false;
  for (const auto& m : root.GetObject()) {
    // The splitter forwards only known members, so the lookup always succeeds.
    const std::optional<EnvelopeField> f = envelope_field_named(view(m.name));
    if (!f) continue;
    const Value*& slot = fields[static_cast<size_t>(*f)];
    if (slot != nullptr) {
      if (duplicate == nullptr) duplicate = &m.name;
      if (*f == EnvelopeField::v) duplicate_v = true;
    }
    slot = &m.value;
  }
  // A repeated member is ambiguous (parsers disagree on which one wins), so
  // it is refused rather than guessed; "v" first, as everything depends on it.
  const Value* v = fields[static_cast<size_t>(EnvelopeField::v)];
  if (duplicate_v) {
    c.fail("v", "appears more than once");
    return DecodeError::invalid;
  }
  if (v == nullptr) {
    c.fail("v", "required (the format version, 1)");
    return DecodeError::invalid;
  }
  if (!v->IsUint64() && !v->IsInt64()) {
    c.fail("v", "expected the integer 1, found " + describe(*v));
    return DecodeError::invalid;
  }
  if (v->IsUint64() && v->GetUint64() > static_cast<uint64_t>(kEnvelopeVersion)) {
    *detail = "version " + std::to_string(v->GetUint64()) + ", this build speaks " + std::to_string(kEnvelopeVersion);
    return DecodeError::unsupported_version;
  }
  if (!v->IsUint64() || v->GetUint64() != static_cast<uint64_t>(kEnvelopeVersion)) {
    c.fail("v", "expected the integer 1, found " + describe(*v));
    return DecodeError::invalid;
  }
  e->v = kEnvelopeVersion;
  if (duplicate != nullptr) {
    c.fail(view(*duplicate), "appears more than once");
    return DecodeError::invalid;
  }
  return read_v1_fields(c, fields, params, e) ? DecodeError::none : DecodeError::invalid;
}

}  // namespace ebats
