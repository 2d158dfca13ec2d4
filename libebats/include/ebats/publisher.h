// Publisher: the C++ producer API. Publishes events (the scheduler fans them
// out into tasks) or enqueues one task directly (the original's Task::create).
//
// Every call returns only once the message is durable (SQLite: COMMIT with
// synchronous=FULL), or returns an error: nothing is "sent and hoped for".
// A Publisher holds one broker connection; it is not thread-safe: use one per
// thread. Example:
//
//   auto p = ebats::Publisher::open("/etc/ebats/ebats.yaml");
//   if (!p.ok()) { /* p.status().message() says why */ }
//   auto id = p->publish("order_paied", R"({"order_id":1})");
//   ebats::TaskOptions to; to.delay = std::chrono::seconds(10);
//   auto tid = p->enqueue_task("demo", "closeOrder", R"({"order_id":1})", to);
//   auto batch = p->batch(); batch.add_event("order_paied", "{}"); batch.commit();
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "ebats/export.h"
#include "ebats/status.h"

namespace ebats {

struct EventOptions {
  std::string id;     // caller-chosen UUID makes publishing idempotent; empty = new v4
  std::string trace;  // correlation id (<= 128 bytes)
};

struct TaskOptions {
  std::chrono::milliseconds delay{0};  // > 0: dtask lane, due after the delay
  std::string trace;                   // correlation id (<= 128 bytes)
};

// What publish() and add_event() check of an event before its params: its
// name, id and trace. OK, or invalid_argument saying what is wrong, so a
// caller can refuse a bad argument before it has params (ebatsctl --jsonl).
EBATS_EXPORT Status check_event_options(std::string_view event, const EventOptions& o);
// The same for enqueue_task() and add_task(): topic, task name, delay, trace.
EBATS_EXPORT Status check_task_options(std::string_view topic, std::string_view task, const TaskOptions& o);

class Publisher;

// A set of events and tasks committed together (one transaction).
class EBATS_EXPORT PublishBatch {
 public:
  // Validate and stage; errors refer to this message only (nothing is staged).
  Result<std::string> add_event(std::string_view event, std::string_view params_json, const EventOptions& o = {});
  Result<std::string> add_task(std::string_view topic, std::string_view task, std::string_view params_json,
                               const TaskOptions& o = {});
  size_t size() const;
  // Commits everything staged; returns once durable. The batch is empty after.
  Status commit();

 private:
  friend class Publisher;
  explicit PublishBatch(Publisher& p);
  Publisher* publisher_;
  std::vector<OutMsg> staged_;
};

class EBATS_EXPORT Publisher {
 public:
  // Opens the broker named in the config file (or from a loaded Config).
  static Result<std::unique_ptr<Publisher>> open(const std::string& config_path);
  static Result<std::unique_ptr<Publisher>> open(std::shared_ptr<const Config> config);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Publishes one event; returns its id once durable. params must be a JSON object.
  Result<std::string> publish(std::string_view event, std::string_view params_json, const EventOptions& o = {});
  // Creates one task directly on `topic`; returns the task id once durable.
  Result<std::string> enqueue_task(std::string_view topic, std::string_view task, std::string_view params_json,
                                   const TaskOptions& o = {});
  PublishBatch batch();
  const Config& config() const { return *config_; }

 private:
  friend class PublishBatch;
  Publisher() = default;
  Result<OutMsg> make_event(std::string_view event, std::string_view params_json, const EventOptions& o);
  Result<OutMsg> make_task(std::string_view topic, std::string_view task, std::string_view params_json,
                                  const TaskOptions& o);
  Status commit(std::vector<OutMsg>& msgs);
  // Commits one message built by make_event / make_task; returns its id.
  Result<std::string> commit_one(Result<OutMsg> msg);
  std::shared_ptr<const Config> config_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<Broker> broker_;
};

}  // namespace ebats
