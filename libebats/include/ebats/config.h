// Config: the one YAML file every daemon and ebatsctl read.
//
// load_config() parses, validates and resolves relative paths (relative to the
// folder holding the config file). Every problem becomes a Diagnostic naming
// file, line and column; nothing throws. A loaded Config is immutable and may
// be shared between threads as std::shared_ptr<const Config>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ebats/export.h"
#include "ebats/retry.h"
#include "ebats/status.h"

namespace ebats {

// Plugin name (its descriptor's `name`) -> its settings as one compact JSON
// object, handed to that plugin's init().
using PluginSettings = std::map<std::string, std::string>;
// All plugin settings together, names and JSON text, fit in this many bytes
// (they travel to each worker child in one frame).
constexpr size_t kMaxPluginSettingsBytes = 63 * 1024;

struct EBATS_EXPORT Diagnostic {
  enum class Severity { error, warning } severity = Severity::error;
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string message;
  // "config/ebats.yaml:23:7: error: unknown key 'tiemout' (did you mean 'timeout'?)"
  std::string to_string() const;
};

// One task registered for an event (one entry of events.<name>).
struct Registration {
  std::string task;
  std::string topic;
  int64_t delay_ms = 0;       // 0 = ntask lane, >0 = dtask lane with due_at = created_at + delay
  RetryPolicy retry;          // defaults.retry unless given
  int64_t timeout_ms = 0;     // 0 = the worker's timeout applies
};

struct WorkerConfig {
  uint32_t processes = 1;
  uint32_t prefetch = 0;            // 0 = automatic (enough to keep every child busy)
  int64_t timeout_ms = 60'000;      // soft timeout of one task (should_stop() turns 1)
  int64_t kill_after_ms = 5'000;    // SIGKILL this long after the soft timeout
  int64_t drain_timeout_ms = 30'000;
  int64_t start_timeout_ms = 30'000;  // a child not ready by then (a plugin's init hangs) is killed
  // The ntask worker also routes events, as ebats-scheduler does, and claims
  // its topic's tasks in the same commit (SQLite only; Broker::commit_routed).
  bool route_events = false;
};

struct SqliteConfig {
  bool synchronous_full = true;     // synchronous: full | normal (publishes, enqueues, operator actions)
  bool sync_progress = false;       // sync_progress: also fsync commits that only record consumer progress
  int64_t busy_timeout_ms = 5'000;
  int64_t poll_interval_ms = 50;
  int64_t lease_ms = 30'000;
  uint32_t claim_batch = 1024;
};

// TLS for amqps:// URLs. CA verification is on by default; with no ca_file
// the system's trust store is used.
struct AmqpTlsConfig {
  std::string ca_file;         // absolute; empty = the system's CA certificates
  std::string cert_file;       // client certificate (PEM), optional
  std::string key_file;        // its private key (PEM), required with cert_file
  bool verify_peer = true;
  bool verify_hostname = true;
};

// broker.amqp: the RabbitMQ backend (docs/RABBITMQ.md).
struct AmqpConfig {
  std::string prefix = "ebats";          // names: <prefix>.events, <prefix>.ntask.<topic>, ...
  int64_t heartbeat_ms = 30'000;
  int64_t connect_timeout_ms = 10'000;   // TCP connect, TLS and AMQP handshake, each RPC
  int64_t confirm_timeout_ms = 30'000;   // a publish not confirmed by then fails its commit
  int64_t consumer_timeout_ms = 1'800'000;  // mirrors RabbitMQ's consumer_timeout
  uint32_t delay_levels = 24;            // delay queues: one per power of two of delay_unit
  int64_t delay_unit_ms = 1'000;
  uint32_t delivery_limit = 20;          // quorum x-delivery-limit backstop; 0 = none
  bool results_stream = false;           // keep every result in the stream <prefix>.results
  int64_t results_max_age_ms = 7 * 86'400'000;  // the results stream keeps records this long; 0 = for ever
  int64_t reconnect_min_ms = 500;
  int64_t reconnect_max_ms = 30'000;
  AmqpTlsConfig tls;
  // How long before its due time a delayed task may reach its worker and
  // wait there unacknowledged: 1.5 x delay_unit (the delay levels' slack,
  // amqp::Topology::hold_ms()).
  int64_t hold_ms() const { return delay_unit_ms + delay_unit_ms / 2; }
};

// A custom scheduler (the original's Consumer), RabbitMQ only: ebats-scheduler
// consumes the queue `name`, bound to an upstream exchange, and turns each
// message into a task (or an event) whose params are the message body
// (docs/CONFIG.md, "sources").
struct SourceConfig {
  std::string name;                     // the queue: durable, quorum, not prefixed
  std::string exchange;                 // the upstream exchange
  std::string exchange_type = "topic";  // topic | direct | fanout
  std::vector<std::string> bindings;    // binding keys ([""] for fanout)
  std::string task;                     // each message becomes this task on `topic`...
  std::string topic;
  std::string event;                    // ...or this event, fanned out through `events`
  std::string routing_key_param;        // params member given the routing key; "" = none
  std::map<std::string, std::string> header_params;  // message header -> params member
};

struct EBATS_EXPORT Config {
  std::string path;            // absolute path of the file loaded
  std::string broker_url;      // "sqlite:///abs/path.db" after resolution, or the amqp[s]:// URL as given
  SqliteConfig sqlite;
  AmqpConfig amqp;
  std::string broker_password_file;  // broker.password_file, absolute; AMQP only
  std::string plugins_dir;     // absolute
  PluginSettings plugin_settings;  // plugins.settings (docs/CONFIG.md)
  std::string results_file;    // absolute; empty = no file sink
  // results.keep / results.keep_rows: the SQLite results table keeps rows
  // finished within this long / only the newest this many; 0 = no such bound.
  // The scheduler prunes the rest (scheduler/results_pruner.h).
  int64_t results_keep_ms = 0;
  uint64_t results_keep_rows = 0;
  // metrics.listen: a daemon's name ("scheduler", "ntask-worker@TOPIC",
  // "dtask-worker@TOPIC") -> the HOST:PORT its metrics server listens on;
  // --metrics-listen and $EBATS_METRICS_LISTEN come first (docs/METRICS.md).
  std::map<std::string, std::string> metrics_listen;
  uint64_t max_message_bytes = 1 << 20;
  uint64_t result_message_bytes = 4096;
  int64_t default_timeout_ms = 60'000;
  RetryPolicy default_retry;
  std::map<std::string, std::vector<Registration>> events;
  std::map<std::string, WorkerConfig> workers;  // key = topic
  std::map<std::string, SourceConfig> sources;  // key = the source's queue name

  // The worker settings of a topic: its workers entry or the defaults.
  WorkerConfig worker(const std::string& topic) const;
  // For a sqlite:// URL, the database path; empty otherwise.
  std::string sqlite_path() const;
  // True for an amqp:// or amqps:// broker URL.
  bool is_amqp() const;
  // Every topic the config names: registrations', sources' and workers' topics, sorted.
  std::vector<std::string> topics() const;
  // Registrations of an event, or nullptr when the event is not registered.
  const std::vector<Registration>* registrations(const std::string& event) const;
  // The longest a task may run before its worker kills it: timeout +
  // kill_after, over every topic's worker settings (the defaults for a topic
  // without a workers entry, and for tasks enqueued to any other topic) and
  // every registration's own timeout.
  int64_t longest_task_ms() const;
  // RabbitMQ: how long a task delivery may wait unclaimed in a worker (more
  // were delivered than its children can start) before it goes back to its
  // queue. RabbitMQ closes the channel of a delivery unacknowledged for
  // consumer_timeout; waiting there, then held until due (up to 1.5 x
  // delay_unit) and running for the longest task must stay within it. Half
  // of what the other two leave of it, at least 1 s.
  int64_t amqp_max_unclaimed_ms() const;
};

struct ConfigLoad {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;      // e.g. a topic with no workers entry
  // All errors, one per line; "ok" style is the caller's business.
  std::string error_text() const;
};

// Loads and validates `path`. Never throws.
EBATS_EXPORT ConfigLoad load_config(const std::string& path);
// The same from a string; `display_path` names the file in diagnostics and its
// folder anchors relative paths.
EBATS_EXPORT ConfigLoad load_config_from_string(const std::string& yaml, const std::string& display_path);

}  // namespace ebats
