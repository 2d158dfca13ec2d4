#include "ebats/publisher.h"

#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "envelope/task_message.h"
#include "scheduler/event_router.h"

namespace ebats {
namespace {

// The params passed the limit on their own; the envelope around them must too,
// or the scheduler and workers would dead-letter the message as too large.
Status check_encoded_size(const OutMsg& m, const char* what, uint64_t limit) {
  if (m.body.size() <= limit) return Status();
  return Status::error(StatusCode::too_large, std::string(what) + " " + m.name + " is " +
                                                  std::to_string(m.body.size()) + " bytes encoded, limit " +
                                                  std::to_string(limit));
}

// The most a task adds to its event's envelope (docs/WIRE.md §2): task and
// topic names, due_at, attempts, parent id, timeout and the frozen backoff
// list, with room to spare. An event this far below the limit needs no check
// of its tasks.
size_t task_overhead_bound(const Registration& reg) { return 1024 + 24 * reg.retry.backoff_ms.size(); }

constexpr size_t kMaxTraceBytes = 128;  // docs/WIRE.md §2

}  // namespace

Result<std::unique_ptr<Publisher>> Publisher::open(const std::string& config_path) {
  ConfigLoad load = load_config(config_path);
  if (!load.config) return Status::invalid(load.error_text());
  return open(load.config);
}

Result<std::unique_ptr<Publisher>> Publisher::open(std::shared_ptr<const Config> config) {
  std::unique_ptr<Publisher> p(new Publisher());
  p->config_ = std::move(config);
  p->clock_ = std::make_unique<SystemClock>();
  auto broker = open_broker(broker_options(*p->config_, "publisher"), *p->clock_);
  if (!broker.ok()) return broker.status();
  p->broker_ = std::move(broker).value();
  return p;
}

Publisher::~Publisher() = default;

Status check_event_options(std::string_view event, const EventOptions& o) {
  if (!is_valid_event_name(event)) {
    return Status::invalid("invalid event name '" + std::string(event) + "': use 1-128 of [A-Za-z0-9_.:-]");
  }
  if (!o.id.empty() && !is_valid_uuid(o.id)) {
    return Status::invalid("invalid event id '" + o.id + "': expected a lowercase UUID");
  }
  if (o.trace.size() > kMaxTraceBytes) return Status::invalid("trace is longer than 128 bytes");
  return Status();
}

Status check_task_options(std::string_view topic, std::string_view task, const TaskOptions& o) {
  if (!is_valid_topic(topic)) {
    return Status::invalid("invalid topic '" + std::string(topic) + "': use 1-64 of [A-Za-z0-9_-]");
  }
  if (!is_valid_task_name(task)) {
    return Status::invalid("invalid task name '" + std::string(task) + "': use 1-128 of [A-Za-z0-9_.:-]");
  }
  if (o.delay.count() < 0) return Status::invalid("delay must not be negative");
  if (o.delay > kMaxDuration) {
    return Status::invalid("delay " + std::to_string(o.delay.count()) + "ms is longer than the maximum of " +
                           kMaxDurationText);
  }
  // A longer one would be published, then dead-lettered unrun as invalid.
  if (o.trace.size() > kMaxTraceBytes) return Status::invalid("trace is longer than 128 bytes");
  return Status();
}

Result<OutMsg> Publisher::make_event(std::string_view event, std::string_view params_json, const EventOptions& o) {
  if (Status s = check_event_options(event, o); !s.ok()) return s;
  auto params = normalize_params(params_json, config_->max_message_bytes);
  if (!params.ok()) return params.status().with_context("params of event " + std::string(event));
  Envelope e;
  e.kind = EnvelopeKind::event;
  e.created_at = clock_->wall_now();
  e.id = o.id.empty() ? new_uuid_v7(e.created_at) : o.id;
  e.event = std::string(event);
  e.params = std::move(params).value();
  e.trace = o.trace;
  OutMsg m;
  m.lane = Lane::events;
  m.id = e.id;
  m.name = e.event;
  m.body = encode_envelope(e);
  m.due_at = e.created_at;
  Status size = check_encoded_size(m, "event", config_->max_message_bytes);
  if (!size.ok()) return size;
  // Its tasks carry more than the event (ids, names, the retry policy): one
  // that would pass the limit would be dead-lettered "too large" unrun. Only
  // an event near the limit has its tasks encoded to find out.
  if (const std::vector<Registration>* regs = config_->registrations(e.event)) {
    for (const Registration& reg : *regs) {
      if (m.body.size() + task_overhead_bound(reg) <= config_->max_message_bytes) continue;
      const size_t task_bytes = encode_envelope(task_for(e, reg, e.created_at)).size();
      if (task_bytes > config_->max_message_bytes) {
        return Status::error(StatusCode::too_large,
                             "event " + m.name + ": its task " + reg.task + " on topic " + reg.topic + " would be " +
                                 std::to_string(task_bytes) + " bytes encoded, limit " +
                                 std::to_string(config_->max_message_bytes) + "; send smaller params");
      }
    }
  }
  return m;
}

Result<OutMsg> Publisher::make_task(std::string_view topic, std::string_view task, std::string_view params_json,
                                    const TaskOptions& o) {
  if (Status s = check_task_options(topic, task, o); !s.ok()) return s;
  auto params = normalize_params(params_json, config_->max_message_bytes);
  if (!params.ok()) return params.status().with_context("params of task " + std::string(task));
  Envelope e;
  e.kind = EnvelopeKind::task;
  e.created_at = clock_->wall_now();
  e.id = new_uuid_v7(e.created_at);
  e.task = std::string(task);
  e.topic = std::string(topic);
  e.params = std::move(params).value();
  e.due_at = e.created_at + o.delay.count();
  e.trace = o.trace;
  e.max_attempts = config_->default_retry.max_attempts();
  e.has_retry = true;
  e.backoff_ms = config_->default_retry.backoff_ms;
  e.jitter_pct = config_->default_retry.jitter_pct;
  OutMsg m = task_message(e, o.delay.count() > 0 ? Lane::dtask : Lane::ntask);
  Status size = check_encoded_size(m, "task", config_->max_message_bytes);
  if (!size.ok()) return size;
  return m;
}

Status Publisher::commit(std::vector<OutMsg>& msgs) {
  if (msgs.empty()) return Status();
  Batch b;
  b.publish = std::move(msgs);
  msgs.clear();
  auto r = broker_->commit(b);
  if (!r.ok()) return r.status();
  return Status();
}

Result<std::string> Publisher::commit_one(Result<OutMsg> msg) {
  if (!msg.ok()) return msg.status();
  std::string id = msg->id;
  std::vector<OutMsg> v;
  v.push_back(std::move(msg).value());
  Status s = commit(v);
  if (!s.ok()) return s;
  return id;
}

Result<std::string> Publisher::publish(std::string_view event, std::string_view params_json, const EventOptions& o) {
  return commit_one(make_event(event, params_json, o));
}

Result<std::string> Publisher::enqueue_task(std::string_view topic, std::string_view task,
                                            std::string_view params_json, const TaskOptions& o) {
  return commit_one(make_task(topic, task, params_json, o));
}

PublishBatch Publisher::batch() { return PublishBatch(*this); }

PublishBatch::PublishBatch(Publisher& p) : publisher_(&p) {}

Result<std::string> PublishBatch::add_event(std::string_view event, std::string_view params_json,
                                            const EventOptions& o) {
  auto m = publisher_->make_event(event, params_json, o);
  if (!m.ok()) return m.status();
  std::string id = m->id;
  staged_.push_back(std::move(m).value());
  return id;
}

Result<std::string> PublishBatch::add_task(std::string_view topic, std::string_view task,
                                           std::string_view params_json, const TaskOptions& o) {
  auto m = publisher_->make_task(topic, task, params_json, o);
  if (!m.ok()) return m.status();
  std::string id = m->id;
  staged_.push_back(std::move(m).value());
  return id;
}

size_t PublishBatch::size() const { return staged_.size(); }

Status PublishBatch::commit() { return publisher_->commit(staged_); }

}  // namespace ebats
