#include "scheduler/event_router.h"

#include "ebats/envelope.h"
#include "envelope/task_message.h"

namespace ebats {

Envelope task_for(const Envelope& event, const Registration& reg, WallMs now) {
  Envelope t;
  t.kind = EnvelopeKind::task;
  t.id = task_uuid(event.id, event.event, reg.task, reg.topic);
  t.event = event.event;
  t.task = reg.task;
  t.topic = reg.topic;
  t.params = event.params;
  t.trace = event.trace;
  t.parent = event.id;
  const WallMs base = event.created_at > now + kMaxEventClockSkewMs ? now : event.created_at;
  t.created_at = now;
  t.due_at = base + reg.delay_ms;
  t.attempt = 0;
  t.max_attempts = reg.retry.max_attempts();
  t.has_retry = true;
  t.backoff_ms = reg.retry.backoff_ms;
  t.jitter_pct = reg.retry.jitter_pct;
  t.timeout_ms = reg.timeout_ms;
  return t;
}

namespace {

DeadLetter dead_event(const Delivery& d, std::string reason, std::string error, WallMs now) {
  DeadLetter dl;
  dl.id = d.id.empty() ? new_uuid_v4() : d.id;
  dl.kind = "event";
  dl.name = d.name;
  dl.reason = std::move(reason);
  dl.error = std::move(error);
  dl.body = d.body;
  dl.first_seen = d.created_at;
  dl.dead_at = now;
  return dl;
}

}  // namespace

Batch route_events(const std::vector<Delivery>& events, const Config& config, WallMs now, RouteSummary* summary) {
  Batch batch;
  RouteSummary local;
  RouteSummary& sum = summary ? *summary : local;
  for (const Delivery& d : events) {
    sum.events++;
    Settle settle;
    settle.kind = Settle::Kind::ack;
    settle.token = d.token;
    settle.id = d.id;
    DecodeResult r = decode_envelope(d.body, config.max_message_bytes);
    if (!r.ok() || r.envelope.kind != EnvelopeKind::event) {
      const std::string reason = r.ok() ? "invalid" : decode_error_reason(r.error);
      const std::string detail = r.ok() ? "kind is 'task' on the events lane" : r.detail;
      DeadLetter dl = dead_event(d, reason, detail, now);
      dl.kind = "raw";
      sum.invalid++;
      sum.invalid_details.push_back(d.id + ": " + reason + ": " + detail);
      settle.then_dead = std::move(dl);
      batch.settle.push_back(std::move(settle));
      continue;
    }
    const Envelope& ev = r.envelope;
    const auto* regs = config.registrations(ev.event);
    if (regs == nullptr || regs->empty()) {
      sum.unroutable++;
      sum.unknown_events.push_back(ev.event);
      settle.then_dead = dead_event(d, "no registration for event " + ev.event,
                                    "no task is registered for this event in " + config.path, now);
      batch.settle.push_back(std::move(settle));
      continue;
    }
    for (const Registration& reg : *regs) {
      const Lane lane = reg.delay_ms > 0 ? Lane::dtask : Lane::ntask;
      settle.then_publish.push_back(task_message(task_for(ev, reg, now), lane));
      sum.tasks++;
    }
    batch.settle.push_back(std::move(settle));
  }
  return batch;
}

}  // namespace ebats
