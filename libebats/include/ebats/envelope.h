// Envelope: the versioned JSON wire format of every event and task (docs/WIRE.md).
//
// decode_envelope() checks the size limit before parsing, parses with RapidJSON
// (iterative parser, UTF-8 validation) and validates every known field strictly
// (type, range, pattern); unknown top-level fields are ignored.
// encode_envelope() writes the canonical form. Both are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/clock.h"
#include "ebats/export.h"
#include "ebats/status.h"

namespace ebats {

constexpr int kEnvelopeVersion = 1;
constexpr size_t kMaxHistory = 10;         // history keeps the last 10 attempts
constexpr size_t kMaxHistoryMessage = 512; // bytes per history message
// The latest time an envelope may name (created_at, due_at, history times):
// 9999-12-31T23:59:59.999Z in ms since the epoch. With durations capped at
// kMaxDuration (timeout_ms, retry.backoff_ms), sums of the two never overflow.
constexpr int64_t kMaxEpochMs = 253'402'300'799'999;

enum class EnvelopeKind : uint8_t { event, task };

struct HistoryEntry {
  uint32_t attempt = 0;
  std::string status;     // ok | retry | failed | dead | replayed
  WallMs started_at = 0;
  WallMs finished_at = 0;
  std::string message;    // at most kMaxHistoryMessage bytes
  std::string host;
  int64_t pid = 0;
};

struct Envelope {
  int v = kEnvelopeVersion;
  std::string id;              // lowercase UUID
  EnvelopeKind kind = EnvelopeKind::event;
  std::string event;           // required for events; optional for tasks
  std::string task;            // required for tasks
  std::string topic;           // required for tasks
  std::string params = "{}";   // the JSON object, as compact text
  WallMs created_at = 0;
  WallMs due_at = 0;           // tasks only
  uint32_t attempt = 0;        // tasks only
  uint32_t max_attempts = 6;   // tasks only
  std::string trace;           // optional, <= 128 bytes
  std::string parent;          // optional: id of the event that produced the task
  int64_t timeout_ms = 0;      // optional; 0 = absent
  bool has_retry = false;      // retry policy frozen in the task
  std::vector<int64_t> backoff_ms;
  uint32_t jitter_pct = 0;     // retry.jitter_pct, 0 ... 100; 0 = absent
  std::vector<HistoryEntry> history;
  // Top-level members this version does not know, as one compact JSON object
  // (empty when there are none): kept when decoding, written back after the
  // known members when encoding, so a retry or a dead letter carries what a
  // newer producer added (docs/WIRE.md §1).
  std::string unknown_members;
};

// Why bytes were refused. The code maps to the dead-letter reason.
enum class DecodeError : uint8_t { none, too_large, malformed, unsupported_version, invalid };
EBATS_EXPORT const char* decode_error_reason(DecodeError e);  // "too large", "malformed", ...

struct DecodeResult {
  DecodeError error = DecodeError::none;
  std::string detail;  // e.g. "offset 17: Missing a name for object member." or "field 'topic': ..."
  Envelope envelope;   // valid only when error == none
  bool ok() const { return error == DecodeError::none; }
};

// REQUIRES: nothing; any bytes are accepted and judged.
EBATS_EXPORT DecodeResult decode_envelope(std::string_view bytes, uint64_t max_bytes);
EBATS_EXPORT std::string encode_envelope(const Envelope& e);

// Checks that `json` is one JSON object whose compact form is no larger than
// max_bytes (and that, as given, is at most 4 x max_bytes); on success returns
// its compact form.
EBATS_EXPORT Result<std::string> normalize_params(std::string_view json, uint64_t max_bytes);

// Name rules (see docs/WIRE.md).
EBATS_EXPORT bool is_valid_event_name(std::string_view s);  // [A-Za-z0-9_.:-]{1,128}
EBATS_EXPORT bool is_valid_task_name(std::string_view s);   // [A-Za-z0-9_.:-]{1,128}
EBATS_EXPORT bool is_valid_topic(std::string_view s);       // [A-Za-z0-9_-]{1,64}
EBATS_EXPORT bool is_valid_uuid(std::string_view s);        // lowercase 8-4-4-4-12 hex

// Random UUID (v4), lowercase.
EBATS_EXPORT std::string new_uuid_v4();
// Time-ordered UUID (v7, RFC 9562): 48 bits of `now` (ms), a 12-bit counter
// (rand_a, RFC 9562 §6.2 method 1: 0 at each new `now` of the calling thread,
// +1 per id, held at 4095), then 62 random bits. Ids one thread makes later
// sort later, within a millisecond too, so B-tree inserts land on the index's
// last page. Thread-safe; unique across threads and forked processes.
EBATS_EXPORT std::string new_uuid_v7(WallMs now);
// Deterministic, time-ordered task id (UUIDv8, RFC 9562 §5.8): the first 64
// bits of event_id (its millisecond and counter when the event id is a v7, as
// ebats makes them) with the version set to 8, then the last 64 bits of the
// UUIDv5 in the ebats namespace over
// event_id + '\n' + event + '\n' + task + '\n' + topic. A redelivered event
// yields the same task ids, and tasks of later events sort later, so the
// queue's and the results' id indexes grow at their ends (docs/WIRE.md §3).
EBATS_EXPORT std::string task_uuid(std::string_view event_id, std::string_view event, std::string_view task,
                                   std::string_view topic);

}  // namespace ebats
