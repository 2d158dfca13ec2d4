#include "broker/amqp/amqp_messages.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <limits>

#include "ebats/envelope.h"
#include "envelope/json_io.h"
#include "envelope/utf8.h"

namespace ebats {
namespace amqp {
namespace {

constexpr const char* kJson = "application/json";

HeaderValue text_header(const char* key, std::string value) {
  HeaderValue h;
  h.key = key;
  h.is_text = true;
  h.text = std::move(value);
  return h;
}

HeaderValue number_header(const char* key, int64_t value) {
  HeaderValue h;
  h.key = key;
  h.is_text = false;
  h.number = value;
  return h;
}

// At most kMaxHeaderText bytes, cut between characters, not inside one.
std::string header_cut(const std::string& text) {
  const std::string valid = replace_invalid_utf8(text);
  return valid.substr(0, utf8_prefix_length(valid, kMaxHeaderText));
}

std::string header_text(const MessageProperties& p, const char* key) {
  const HeaderValue* h = p.header(key);
  return h && h->is_text ? h->text : std::string();
}

int64_t header_number(const MessageProperties& p, const char* key, int64_t fallback = 0) {
  const HeaderValue* h = p.header(key);
  return h && !h->is_text ? h->number : fallback;
}

// A message's timestamp (seconds, whatever its publisher put there) in ms,
// saturated instead of overflowing.
WallMs ms_of_seconds(int64_t seconds) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 1000;
  return std::clamp<int64_t>(seconds, -kMax, kMax) * 1000;
}

// RabbitMQ's dead-letter reasons, as ebats names reasons.
std::string broker_reason(const std::string& reason) {
  if (reason == "delivery_limit") return "delivery limit";
  if (reason == "expired") return "expired";
  if (reason == "maxlen") return "queue full";
  if (reason == "rejected") return "rejected";
  return reason.empty() ? "dead-lettered by RabbitMQ" : reason;
}

}  // namespace

OutMessage out_message(const OutMsg& m, const Topology& topology, WallMs now) {
  OutMessage out;
  const Route route = m.lane == Lane::events   ? topology.event_route(m.name)
                      : m.lane == Lane::source ? topology.source_route(m.topic)
                                               : topology.task_route(m.lane, m.topic, m.due_at, now);
  out.exchange = route.exchange;
  out.routing_key = route.routing_key;
  out.body = m.body;
  out.properties.message_id = m.id;
  out.properties.content_type = kJson;
  out.properties.type = m.lane == Lane::events ? "event" : m.lane == Lane::source ? "source" : "task";
  // A source's message sent back to its queue keeps the routing key it came with.
  if (m.lane == Lane::source) out.properties.headers.push_back(text_header(kSourceRoutingKeyHeader, m.name));
  out.properties.timestamp = now / 1000;
  return out;
}

OutMessage dead_letter_message(const DeadLetter& d, const Topology& topology) {
  OutMessage out;
  out.exchange = topology.dead_exchange();
  out.routing_key = d.topic.empty() ? "_" + d.kind : d.topic;
  out.body = d.body;
  MessageProperties& p = out.properties;
  p.message_id = d.id.empty() ? new_uuid_v4() : d.id;
  p.content_type = d.kind == "raw" ? "application/octet-stream" : kJson;
  p.type = "dead";
  p.timestamp = d.dead_at / 1000;
  p.headers.push_back(text_header(kReasonHeader, header_cut(d.reason)));
  p.headers.push_back(text_header(kErrorHeader, header_cut(d.error)));
  p.headers.push_back(text_header(kKindHeader, d.kind));
  p.headers.push_back(text_header(kTopicHeader, d.topic));
  p.headers.push_back(text_header(kNameHeader, header_cut(d.name)));
  p.headers.push_back(number_header(kAttemptsHeader, d.attempts));
  p.headers.push_back(number_header(kFirstSeenHeader, d.first_seen));
  p.headers.push_back(number_header(kDeadAtHeader, d.dead_at));
  return out;
}

std::vector<OutMessage> result_messages(const std::vector<ResultRecord>& results, const Topology& topology,
                                        size_t max_body, WallMs now) {
  std::vector<OutMessage> out;
  auto start = [&](const std::string& topic) {
    OutMessage m;
    m.exchange = topology.results_exchange();
    m.routing_key = topic.empty() ? "_" : topic;
    m.mandatory = false;  // published for whoever listens; the results file is the record
    m.properties.message_id = new_uuid_v7(now);
    m.properties.content_type = "application/x-ndjson";
    m.properties.type = "results";
    m.properties.timestamp = now / 1000;
    out.push_back(std::move(m));
  };
  for (const ResultRecord& r : results) {
    const std::string line = result_to_json(r);
    if (out.empty() || out.back().routing_key != (r.topic.empty() ? "_" : r.topic) ||
        (!out.back().body.empty() && out.back().body.size() + line.size() + 1 > max_body)) {
      start(r.topic);
    }
    out.back().body += line;
    out.back().body.push_back('\n');
  }
  return out;
}

std::vector<OutMessage> result_messages(const std::string& jsonl, const std::string& topic, const Topology& topology,
                                        size_t max_body, WallMs now) {
  std::vector<OutMessage> out;
  size_t start = 0;
  while (start < jsonl.size()) {
    // Up to max_body bytes, ending after a line; a longer line goes alone.
    size_t end = start;
    while (end < jsonl.size()) {
      size_t line_end = jsonl.find('\n', end);
      line_end = line_end == std::string::npos ? jsonl.size() : line_end + 1;
      if (end > start && line_end - start > max_body) break;
      end = line_end;
    }
    OutMessage m;
    m.exchange = topology.results_exchange();
    m.routing_key = topic.empty() ? "_" : topic;
    m.mandatory = false;  // published for whoever listens; the results file is the record
    m.body = jsonl.substr(start, end - start);
    m.properties.message_id = new_uuid_v7(now);
    m.properties.content_type = "application/x-ndjson";
    m.properties.type = "results";
    m.properties.timestamp = now / 1000;
    out.push_back(std::move(m));
    start = end;
  }
  return out;
}

OutMessage tombstone_message(const std::vector<uint64_t>& offsets, uint64_t upto, const Topology& topology) {
  std::string body;
  json::StringSink sink(&body);
  json::Writer w(sink);
  w.StartObject();
  if (offsets.empty()) {
    w.Key("upto");
    w.Uint64(upto);
  } else {
    w.Key("settled");
    w.StartArray();
    for (uint64_t o : offsets) w.Uint64(o);
    w.EndArray();
  }
  w.EndObject();
  OutMessage out;
  out.exchange = topology.dead_exchange();
  out.routing_key = "_tombstone";
  out.body = std::move(body);
  out.properties.message_id = new_uuid_v4();
  out.properties.content_type = kJson;
  out.properties.type = kTombstoneType;
  return out;
}

OutMessage marker_message(const std::string& exchange) {
  OutMessage out;
  out.exchange = exchange;
  out.routing_key = "_marker";
  out.properties.message_id = new_uuid_v4();
  out.properties.content_type = kJson;
  out.properties.type = kMarkerType;
  out.body = "{}";
  return out;
}

bool read_tombstone(const Incoming& in, Tombstone* out) {
  if (in.properties.type != kTombstoneType) return false;
  *out = Tombstone{};
  rapidjson::Document doc;
  doc.Parse(in.body.data(), in.body.size());
  if (doc.HasParseError() || !doc.IsObject()) return true;  // unreadable: settles nothing
  auto upto = doc.FindMember("upto");
  if (upto != doc.MemberEnd() && upto->value.IsUint64()) {
    out->has_upto = true;
    out->upto = upto->value.GetUint64();
  }
  auto settled = doc.FindMember("settled");
  if (settled != doc.MemberEnd() && settled->value.IsArray()) {
    for (const auto& v : settled->value.GetArray()) {
      if (v.IsUint64()) out->offsets.push_back(v.GetUint64());
    }
  }
  return true;
}

Delivery delivery_from_message(Lane lane, const std::string& topic, const Incoming& in, uint64_t token,
                               uint64_t max_message_bytes) {
  Delivery d;
  d.token = token;
  d.lane = lane;
  d.topic = topic;
  d.body = in.body;
  d.id = in.properties.message_id;
  d.created_at = ms_of_seconds(in.properties.timestamp);
  const int64_t count = header_number(in.properties, kDeliveryCountHeader, 0);
  d.redeliveries = static_cast<uint32_t>(std::clamp<int64_t>(count, 0, std::numeric_limits<uint32_t>::max()));
  if (lane == Lane::events) {
    d.name = in.routing_key;
    return d;
  }
  if (lane == Lane::source) {
    d.redeliveries = 0;  // an upstream message has no attempts
    const HeaderValue* kept = in.properties.header(kSourceRoutingKeyHeader);
    d.name = kept != nullptr && kept->is_text ? kept->text : in.routing_key;
    for (const HeaderValue& h : in.properties.headers) {
      if (h.key == kSourceRoutingKeyHeader || h.key == kDeliveryCountHeader) continue;
      std::string value;
      if (h.is_text) {
        json::StringSink sink(&value);
        json::Writer w(sink);
        json::write_string(w, h.text);
      } else {
        value = std::to_string(h.number);
      }
      d.headers_json.emplace_back(h.key, std::move(value));
    }
    return d;
  }
  DecodeResult r = decode_envelope(in.body, max_message_bytes);
  if (!r.ok() || r.envelope.kind != EnvelopeKind::task) {
    d.attempt = 0;
    d.max_attempts = 1;
    d.redeliveries = 0;  // the worker dead-letters it as it is
    if (d.id.empty() || !is_valid_uuid(d.id)) d.id = new_uuid_v4();
    return d;
  }
  d.decoded = std::make_shared<Envelope>(std::move(r.envelope));
  const Envelope& e = *d.decoded;
  d.id = e.id;
  d.name = e.task;
  d.due_at = e.due_at;
  d.created_at = e.created_at;
  d.max_attempts = e.max_attempts;
  const uint64_t attempt = uint64_t{e.attempt} + d.redeliveries;
  d.attempt = static_cast<uint32_t>(std::min<uint64_t>(attempt, std::numeric_limits<uint32_t>::max()));
  return d;
}

DeadLetter dead_letter_from_message(const Incoming& in, uint64_t max_message_bytes) {
  const MessageProperties& p = in.properties;
  DeadLetter d;
  d.body = in.body;
  d.id = p.message_id;
  if (p.header(kReasonHeader) != nullptr) {  // ebats' own, whatever its reason says (even nothing)
    d.reason = header_text(p, kReasonHeader);
    d.error = header_text(p, kErrorHeader);
    d.kind = header_text(p, kKindHeader);
    d.topic = header_text(p, kTopicHeader);
    d.name = header_text(p, kNameHeader);
    d.attempts = static_cast<uint32_t>(std::clamp<int64_t>(header_number(p, kAttemptsHeader), 0, UINT32_MAX));
    d.first_seen = header_number(p, kFirstSeenHeader);
    d.dead_at = header_number(p, kDeadAtHeader);
    return d;
  }
  // Dead-lettered by RabbitMQ itself (the delivery limit of a queue).
  d.reason = broker_reason(header_text(p, kFirstDeathReasonHeader));
  d.error = "RabbitMQ dead-lettered the message from queue '" + header_text(p, "x-first-death-queue") + "'";
  // RabbitMQ 3.10 records no time of death that a reader of the stream sees
  // (no x-death reaches it, only x-first-death-*): the time the message was
  // published stands in (docs/RABBITMQ.md).
  d.dead_at = ms_of_seconds(p.timestamp);
  DecodeResult r = decode_envelope(in.body, max_message_bytes);
  if (!r.ok()) {
    d.kind = "raw";
    if (d.id.empty()) d.id = new_uuid_v4();
    return d;
  }
  const Envelope& e = r.envelope;
  d.id = e.id;
  d.kind = e.kind == EnvelopeKind::task ? "task" : "event";
  d.topic = e.topic;
  d.name = e.kind == EnvelopeKind::task ? e.task : e.event;
  const int64_t count = std::clamp<int64_t>(header_number(p, kDeliveryCountHeader), 0, UINT32_MAX);
  d.attempts =
      static_cast<uint32_t>(std::min<uint64_t>(uint64_t{e.attempt} + static_cast<uint64_t>(count), UINT32_MAX));
  d.first_seen = e.created_at;
  return d;
}

std::string with_attempt(const std::string& body, uint32_t attempt, uint64_t max_message_bytes) {
  DecodeResult r = decode_envelope(body, max_message_bytes);
  if (!r.ok() || r.envelope.kind != EnvelopeKind::task || r.envelope.attempt == attempt) return body;
  r.envelope.attempt = attempt;
  return encode_envelope(r.envelope);
}

}  // namespace amqp
}  // namespace ebats
