// libFuzzer target: decode_envelope() on any bytes (the wire format, docs/WIRE.md).
//
// Beyond "no crash, no sanitizer report", on every input:
//  - a refusal names its reason and says why (a non-empty detail);
//  - bytes over the limit are refused as too large, before parsing;
//  - an accepted envelope re-encodes to text that decodes again, to the same
//    fields but for the trimming docs/WIRE.md §5 promises (the 10 newest
//    history entries, messages cut to 512 bytes); from there encoding is a
//    fixed point: decoding and re-encoding change nothing;
//  - its params are one compact JSON object: normalize_params() keeps them as they are.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "ebats/envelope.h"
#include "ebats/retry.h"
#include "fuzz_check.h"

namespace {

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

bool same_history(const ebats::HistoryEntry& a, const ebats::HistoryEntry& b) {
  return a.attempt == b.attempt && a.status == b.status && a.started_at == b.started_at &&
         a.finished_at == b.finished_at && a.message == b.message && a.host == b.host && a.pid == b.pid;
}

// `b` is `a` re-encoded and decoded: the same but for its trimmed history.
bool same_but_trimmed(const ebats::HistoryEntry& a, const ebats::HistoryEntry& b) {
  ebats::HistoryEntry cut = a;
  cut.message = b.message;
  return same_history(cut, b) && b.message.size() <= ebats::kMaxHistoryMessage &&
         a.message.compare(0, b.message.size(), b.message) == 0 &&
         (a.message.size() <= ebats::kMaxHistoryMessage || a.message.size() > b.message.size());
}

bool same_but_history(const ebats::Envelope& a, const ebats::Envelope& b) {
  return a.v == b.v && a.id == b.id && a.kind == b.kind && a.event == b.event && a.task == b.task &&
         a.topic == b.topic && a.params == b.params && a.created_at == b.created_at && a.due_at == b.due_at &&
         a.attempt == b.attempt && a.max_attempts == b.max_attempts && a.trace == b.trace && a.parent == b.parent &&
         a.timeout_ms == b.timeout_ms && a.has_retry == b.has_retry && a.backoff_ms == b.backoff_ms &&
         a.jitter_pct == b.jitter_pct && a.unknown_members == b.unknown_members;
}

// `b` is `a` re-encoded and decoded.
bool same_after_reencoding(const ebats::Envelope& a, const ebats::Envelope& b) {
  if (!same_but_history(a, b)) return false;
  const size_t kept = std::min(a.history.size(), ebats::kMaxHistory);
  if (b.history.size() != kept) return false;
  const size_t first = a.history.size() - kept;
  for (size_t i = 0; i < kept; ++i) {
    if (!same_but_trimmed(a.history[first + i], b.history[i])) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (size > 0) {
    const ebats::DecodeResult over = ebats::decode_envelope(bytes, size - 1);
    FUZZ_CHECK(over.error == ebats::DecodeError::too_large);
  }

  const ebats::DecodeResult first = ebats::decode_envelope(bytes, kNoLimit);
  if (!first.ok()) {
    FUZZ_CHECK(!first.detail.empty());
    return 0;
  }
  const ebats::Envelope& e = first.envelope;
  FUZZ_CHECK(e.v == ebats::kEnvelopeVersion);
  FUZZ_CHECK(ebats::is_valid_uuid(e.id));
  if (e.kind == ebats::EnvelopeKind::task) {
    FUZZ_CHECK(ebats::is_valid_task_name(e.task));
    FUZZ_CHECK(ebats::is_valid_topic(e.topic));
    FUZZ_CHECK(e.jitter_pct <= ebats::kMaxJitterPct);
  } else {
    FUZZ_CHECK(ebats::is_valid_event_name(e.event));
  }

  const ebats::Result<std::string> params = ebats::normalize_params(e.params, kNoLimit);
  FUZZ_CHECK(params.ok());
  FUZZ_CHECK(params.value() == e.params);

  const std::string encoded = ebats::encode_envelope(e);
  const ebats::DecodeResult second = ebats::decode_envelope(encoded, kNoLimit);
  if (!second.ok()) std::fprintf(stderr, "re-encoded: %s\nrefused: %s\n", encoded.c_str(), second.detail.c_str());
  FUZZ_CHECK(second.ok());
  FUZZ_CHECK(same_after_reencoding(e, second.envelope));
  FUZZ_CHECK(ebats::encode_envelope(second.envelope) == encoded);
  return 0;
}
