#include "scheduler/source_router.h"

#include <rapidjson/document.h>

#include "ebats/envelope.h"
#include "envelope/json_io.h"
#include "envelope/task_message.h"

namespace ebats {
namespace {

// The message's params: its body compacted, with the members the source
// names added. An error text when the body is not one JSON object of the
// allowed size or already has a member the source would add.
struct Params {
  std::string text;
  std::string reason;  // "" when ok; else "malformed", "too large" or "invalid"
  std::string detail;
};

Params params_of(const SourceConfig& source, const Delivery& d, uint64_t max_bytes) {
  Params p;
  auto normalized = normalize_params(d.body, max_bytes);
  if (!normalized.ok()) {
    p.reason = normalized.status().code() == StatusCode::too_large ? "too large" : "malformed";
    p.detail = "the message body is not usable as params: " + normalized.status().message();
    return p;
  }
  p.text = std::move(normalized).value();
  std::vector<std::pair<std::string, std::string>> added;  // (member, JSON value)
  if (!source.routing_key_param.empty()) {
    std::string key;
    json::StringSink sink(&key);
    json::Writer w(sink);
    json::write_string(w, d.name);
    added.emplace_back(source.routing_key_param, std::move(key));
  }
  for (const auto& [header, member] : source.header_params) {
    for (const auto& [name, value] : d.headers_json) {
      if (name == header) added.emplace_back(member, value);
    }
  }
  if (added.empty()) return p;
  rapidjson::Document doc;
  doc.Parse<json::kReadFlags>(p.text.data(), p.text.size());
  for (const auto& [member, value] : added) {
    if (doc.IsObject() && doc.HasMember(member.c_str())) {
      p.reason = "invalid";
      p.detail = "the message body already has member '" + member + "', which sources." + source.name +
                 ".params gives the routing key or a header";
      return p;
    }
  }
  // Members are appended to the compact object text, so the body's own
  // members stay byte for byte (numbers are not reformatted).
  std::string members;
  for (const auto& [member, value] : added) {
    if (!members.empty()) members += ',';
    json::StringSink sink(&members);
    json::Writer w(sink);
    json::write_string(w, member);
    members += ':';
    members += value;
  }
  p.text.pop_back();  // '}'
  if (p.text.size() > 1) p.text += ',';
  p.text += members;
  p.text += '}';
  if (p.text.size() > max_bytes) {
    p.reason = "too large";
    p.detail = "the params with the routing key and headers added are " + std::to_string(p.text.size()) +
               " bytes, limit " + std::to_string(max_bytes);
  }
  return p;
}

OutMsg message_for(const SourceConfig& source, const Delivery& d, std::string params, const Config& config,
                   WallMs now) {
  // UUID text is case-insensitive (RFC 9562): an upstream id in capitals
  // names the same message, so it gives the same stable id.
  std::string upstream_id = d.id;
  for (char& c : upstream_id) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  const bool uuid_id = is_valid_uuid(upstream_id);
  Envelope e;
  e.created_at = now;
  e.params = std::move(params);
  if (!source.event.empty()) {
    e.kind = EnvelopeKind::event;
    e.id = uuid_id ? upstream_id : new_uuid_v7(now);
    e.event = source.event;
    OutMsg m;
    m.lane = Lane::events;
    m.id = e.id;
    m.name = e.event;
    m.body = encode_envelope(e);
    m.due_at = now;
    return m;
  }
  e.kind = EnvelopeKind::task;
  e.id = uuid_id ? task_uuid(upstream_id, source.name, source.task, source.topic) : new_uuid_v7(now);
  e.task = source.task;
  e.topic = source.topic;
  e.due_at = now;
  e.max_attempts = config.default_retry.max_attempts();
  e.has_retry = true;
  e.backoff_ms = config.default_retry.backoff_ms;
  e.jitter_pct = config.default_retry.jitter_pct;
  return task_message(e, Lane::ntask);
}

DeadLetter dead_message(const SourceConfig& source, const Delivery& d, const std::string& reason,
                        const std::string& detail, WallMs now) {
  DeadLetter dl;
  dl.id = is_valid_uuid(d.id) ? d.id : new_uuid_v4();
  dl.kind = "raw";
  dl.topic = source.topic;
  dl.name = source.task.empty() ? source.event : source.task;
  dl.reason = reason;
  dl.error = detail + " (source '" + source.name + "', exchange '" + source.exchange + "', routing key '" + d.name +
             "')";
  dl.body = d.body;
  dl.first_seen = d.created_at > 0 ? d.created_at : now;
  dl.dead_at = now;
  return dl;
}

}  // namespace

Batch route_source_messages(const SourceConfig& source, const std::vector<Delivery>& messages, const Config& config,
                            WallMs now, SourceSummary* summary) {
  Batch batch;
  SourceSummary local;
  SourceSummary& sum = summary ? *summary : local;
  for (const Delivery& d : messages) {
    sum.messages++;
    Settle settle;
    settle.kind = Settle::Kind::ack;
    settle.token = d.token;
    settle.id = d.id;
    Params p = params_of(source, d, config.max_message_bytes);
    if (p.reason.empty()) {
      OutMsg m = message_for(source, d, std::move(p.text), config, now);
      if (m.body.size() > config.max_message_bytes) {
        p.reason = "too large";
        p.detail = "its " + std::string(source.event.empty() ? "task" : "event") + " would be " +
                   std::to_string(m.body.size()) + " bytes encoded, limit " + std::to_string(config.max_message_bytes);
      } else {
        settle.then_publish.push_back(std::move(m));
        sum.published++;
      }
    }
    if (!p.reason.empty()) {
      sum.dead++;
      sum.dead_details.push_back(d.name + ": " + p.reason + ": " + p.detail);
      settle.then_dead = dead_message(source, d, p.reason, p.detail, now);
    }
    batch.settle.push_back(std::move(settle));
  }
  return batch;
}

}  // namespace ebats
