// Broker: the interface every queue backend implements: SQLite (sqlite://, one
// host) and RabbitMQ (amqp:// and amqps://, many hosts).
//
// One Broker object belongs to one thread and is not thread-safe (only
// alive() and wake_fd() may be used from another); open one per thread or
// process. All retry / dead-letter / result decisions are taken above this
// interface (retry.h), so backends behave alike.
//
// Rule: a delivery is only ever removed together with what replaces it (a retry,
// a dead letter, fanned-out tasks), in one commit(). Nothing is acked before its
// replacement is durable (SQLite: the same transaction; RabbitMQ: the
// replacement's publisher confirm arrives before the ack is sent).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ebats/clock.h"
#include "ebats/config.h"
#include "ebats/envelope.h"
#include "ebats/export.h"
#include "ebats/result.h"
#include "ebats/status.h"

namespace ebats {

// source: messages of an upstream exchange that a `sources` entry of the
// config consumes (RabbitMQ only; the topic is the source's name).
enum class Lane : uint8_t { events, ntask, dtask, source };
EBATS_EXPORT const char* lane_name(Lane lane);  // "events" | "ntask" | "dtask" | "source"

// A message to publish. For tasks, `id` must be unique among live tasks:
// publishing a task whose id is already queued is ignored (idempotent).
struct OutMsg {
  Lane lane = Lane::events;
  std::string topic;           // tasks only
  std::string id;              // envelope id
  std::string name;            // event name or task name
  std::string body;            // the encoded envelope
  WallMs due_at = 0;           // tasks: earliest start; events: ignored
  uint32_t attempt = 0;        // tasks: mirrors the envelope
  uint32_t max_attempts = 1;   // tasks: mirrors the envelope
};

// A claimed message. The lease (SQLite) or unacked delivery (AMQP) holds until
// settled in commit(), extended with extend(), or expired.
struct Delivery {
  uint64_t token = 0;          // identifies the claim in settle / extend
  Lane lane = Lane::events;
  std::string topic;
  std::string id;
  std::string name;
  std::string body;
  uint32_t attempt = 0;        // authoritative attempt count (lease recovery raises it)
  uint32_t max_attempts = 1;
  WallMs due_at = 0;
  WallMs created_at = 0;
  // Deliveries of this message that ended without a settle because the worker
  // holding it died or lost its connection (RabbitMQ's x-delivery-count),
  // already counted in `attempt`. When they exhaust it (attempt >=
  // max_attempts) the caller dead-letters the message as "worker lost".
  uint32_t redeliveries = 0;
  // Lane::source only: the message's text and integer headers, each as a
  // JSON value (a string or a number), by header name. Its routing key is `name`.
  std::vector<std::pair<std::string, std::string>> headers_json;
  // The body decoded, when the backend had to decode it (RabbitMQ reads a
  // task's due time and attempts from its envelope), so the caller need not
  // decode it again; its attempt is the envelope's own. Null otherwise. The
  // caller may move from it.
  std::shared_ptr<Envelope> decoded;
};

struct DeadLetter {
  std::string id;              // envelope id, or a fresh UUID for raw bytes
  std::string kind;            // event | task | raw
  std::string topic;           // tasks
  std::string name;            // event or task name, if known
  std::string reason;          // "no registration for event X", "failed", "retries exhausted", "malformed", ...
  std::string error;           // last error message / parser error
  uint32_t attempts = 0;
  std::string body;            // original bytes, unchanged
  WallMs first_seen = 0;
  WallMs dead_at = 0;
};

// Settle a held delivery. `then_publish` / `then_dead` take effect only if the
// settle did (the lease was still ours, or the unleased row was still there),
// so a stale worker cannot duplicate a retry or a dead letter, and two
// schedulers routing the same event cannot both fan it out.
struct Settle {
  enum class Kind : uint8_t { ack, release } kind = Kind::ack;  // release: back to ready, attempt unchanged
  uint64_t token = 0;
  // The delivery's id (Delivery::id). SQLite checks it with the token, whose
  // row seq it hands out again once the newest row is gone: a late settle then
  // finds another task under its seq, and must not settle it. Empty: the
  // token alone (RabbitMQ's tokens are never reused).
  std::string id;
  std::vector<OutMsg> then_publish;      // a retry (one message) or a fan-out (one per registration)
  std::optional<DeadLetter> then_dead;
};

// Everything in a batch is committed atomically (SQLite: one transaction).
struct Batch {
  std::vector<OutMsg> publish;
  std::vector<DeadLetter> dead;
  std::vector<ResultRecord> results;
  std::vector<Settle> settle;
  // `results` as JSON lines (result_to_json, one per line), when the caller
  // made them anyway (the worker's results file): RabbitMQ publishes these
  // bytes instead of encoding the records again. Empty, or exactly `results`.
  std::string results_jsonl;
  bool empty() const { return publish.empty() && dead.empty() && results.empty() && settle.empty(); }
};

struct CommitReport {
  uint32_t settled = 0;
  uint32_t stale = 0;          // settles whose lease had already been lost
  uint32_t published = 0;      // rows actually inserted (duplicates ignored)
};

struct QueueDepth {
  enum class Row : uint8_t { topic, events, delay_levels } row = Row::topic;
  std::string topic;           // Row::topic only
  uint64_t ready = 0;          // ntask lane, due now (events: not yet routed)
  uint64_t delayed = 0;        // not yet due (any lane) or waiting in the dtask lane
  uint64_t leased = 0;         // claimed by a worker
  uint64_t done = 0;           // results with status ok
  uint64_t dead = 0;           // dead letters
  bool leased_known = true;    // RabbitMQ cannot count unacknowledged messages
  bool done_known = true;      // RabbitMQ keeps no count of finished tasks
  bool dead_known = true;      // false when depths() was asked to skip what costs a read of every dead letter
};

// Whether depths() counts dead letters where that costs a read of all of
// them (RabbitMQ's dead-letter stream, and a marker appended to it per read):
// what `ebatsctl stats` wants, not a poll every few seconds. SQLite counts
// them either way (its commits keep the counts).
enum class DeadLetterCount : uint8_t { counted, skipped_if_costly };

// Which stored results read_results() returns.
struct ResultQuery {
  std::string task_id;         // only this task's records, when not empty
  uint64_t after_seq = 0;      // only rows after this one (ResultRow::seq)
  uint32_t newest = 0;         // only the newest this many of those (0: all); still returned oldest first
};

struct ResultRow {
  uint64_t seq = 0;            // increases with every record stored
  ResultRecord record;
};

struct DeadLetterEntry {
  uint64_t seq = 0;            // the key used by show / replay / purge
  DeadLetter letter;
};

// The dead-letter store behind `ebatsctl dead`.
class EBATS_EXPORT DeadLetterStore {
 public:
  virtual ~DeadLetterStore() = default;
  virtual Result<std::vector<DeadLetterEntry>> list(uint32_t limit) = 0;
  virtual Result<DeadLetterEntry> show(uint64_t seq) = 0;  // not_found if absent
  // Puts the task back on its topic's ntask lane (due now, attempt 0, same id)
  // or the event back on the events lane, and deletes the dead letter, in one
  // commit. Raw (malformed) entries cannot be replayed (invalid_argument).
  virtual Status replay(uint64_t seq, WallMs now) = 0;
  // Replays every replayable entry; returns how many were replayed.
  virtual Result<uint64_t> replay_all(WallMs now) = 0;
  // Deletes every entry; returns how many.
  virtual Result<uint64_t> purge() = 0;
  // For a filtered `ebatsctl dead replay` / `dead purge`: the caller picks the
  // entries from list(). Replays, as replay_all() does, those of `seqs` that
  // still exist and can be replayed, or deletes those that still exist;
  // returns how many. An entry settled meanwhile by someone else is skipped.
  virtual Result<uint64_t> replay_selected(const std::vector<uint64_t>& seqs, WallMs now) = 0;
  virtual Result<uint64_t> purge_selected(const std::vector<uint64_t>& seqs) = 0;
};

class EBATS_EXPORT Broker {
 public:
  virtual ~Broker() = default;

  // Declares everything ebats publishes to or consumes from for `topics`
  // (RabbitMQ: the exchanges, the queues of each topic, the delay levels, the
  // dead-letter and results streams, and every source's upstream exchange,
  // queue and bindings; SQLite: nothing, the schema exists once the broker is
  // open). A queue that exists with other arguments is an
  // invalid_argument error naming the queue and the argument.
  virtual Status setup(const std::vector<std::string>& topics) = 0;
  // Counts again what depths() reads from counts that the commits keep
  // (SQLite: queue_counts, which only changes made by something other than
  // ebats leave wrong; RabbitMQ: nothing, the broker counts its queues).
  // `ebatsctl setup` calls it; a daemon does not, as on a backlog it is a
  // write transaction over every queued row (0.2 s for 2,000,000).
  virtual Status recount() = 0;
  // Starts the deliveries that claim() and claim_and_commit() return for
  // (lane, topic), holding at most `prefetch` unsettled ones (RabbitMQ:
  // declares the queue, basic.qos and basic.consume; SQLite: nothing, claims
  // query the table). Calling it again with another prefetch changes it.
  // Fails for what the caller must fix (a queue with other arguments, no
  // access to it); RabbitMQ unreachable, or failing the consume on its side
  // and closing the connection, is not a failure: the backend consumes once
  // it is connected again.
  virtual Status subscribe(Lane lane, const std::string& topic, uint32_t prefetch) = 0;
  // True when the broker stops handing out deliveries while `prefetch` of
  // them (subscribe()) are unsettled, finished or not (RabbitMQ's basic.qos):
  // a caller that holds finished ones for its next commit then holds the
  // window shut, and should commit before the window is spent. False
  // (SQLite): a claim takes what is asked, whatever waits for a commit.
  virtual bool prefetch_counts_unsettled() const { return false; }
  // A file descriptor that is readable while claim() has deliveries to hand
  // out (level-triggered), or -1 when the caller has to poll. Thread-safe.
  virtual int wake_fd() const { return -1; }
  // False once a claimed delivery can no longer be settled (RabbitMQ: its
  // channel closed, so the broker gives the message to another consumer):
  // the caller should not start it. Thread-safe.
  virtual bool alive(uint64_t token) const {
    (void)token;
    return true;
  }

  // Claims up to `max` deliveries of (lane, topic) that are due now. Events
  // ignore `topic`. Returns an empty vector when nothing is due.
  Result<std::vector<Delivery>> claim(Lane lane, const std::string& topic, uint32_t max) {
    return claim_ahead(lane, topic, max, 0);
  }
  // Like claim(), but also takes tasks that come due within `lookahead_ms`:
  // the dtask worker holds them and starts each at its due time, so a burst of
  // delayed tasks does not wait for a claim when it comes due. The caller must
  // not start a task before its due_at.
  virtual Result<std::vector<Delivery>> claim_ahead(Lane lane, const std::string& topic, uint32_t max,
                                                    int64_t lookahead_ms) = 0;
  // Reads up to `max` deliveries that claim() would return, without leasing
  // them, calls `route` on them outside any lock, and commits the batch it
  // builds in one transaction, durable as commit() makes it, so nothing ever
  // stays leased. Each settle in the batch must be an ack of one of those
  // deliveries; it takes effect only if its row is still there (another
  // process may have settled it meanwhile), and its then_publish / then_dead
  // with it. For routing that needs no process of its own, like the
  // scheduler's fan-out. `route` must not throw. Returns how many deliveries
  // were read: fewer than `max` when their bodies reached
  // BrokerOptions::read_budget_bytes.
  using RouteFn = std::function<Batch(const std::vector<Delivery>&)>;
  virtual Result<size_t> claim_and_commit(Lane lane, const std::string& topic, uint32_t max, const RouteFn& route) = 0;
  // What commit_routed() did: how many events it was given, and the tasks it
  // claimed.
  struct RoutedClaim {
    size_t events = 0;
    std::vector<Delivery> claimed;
  };
  // claim_and_commit(Lane::events, ...) in two halves, for a worker that routes
  // the events itself (workers.<topic>.route_events) on another thread while
  // this broker's thread goes on with other calls. read_events() returns up to
  // `max` events that claim() would return, without leasing them (reading
  // stops early at BrokerOptions::read_budget_bytes, as claim_and_commit()
  // does); the caller routes them and hands the batch, built from those
  // deliveries as claim_and_commit()'s `route` builds it, to commit_routed()
  // with the same deliveries. commit_routed() commits it as claim_and_commit()
  // commits its batch, then, as claim(Lane::ntask, claim_topic, claim_max)
  // does, claims up to `claim_max` of the topic's due tasks, the ones just
  // routed among them. SQLite does both in one transaction (one commit where a
  // scheduler and a worker make two; the topic's routed tasks are inserted
  // leased, so no task row is written twice), and does not hold the events
  // read meanwhile: a crash between the halves leaves them ready. RabbitMQ
  // holds them unacknowledged, as claim() does, runs the commit and the claim
  // in turn, and hands back what the commit did not settle. With no events,
  // commit_routed() is claim(); with claim_max 0 it only commits. A claim
  // that fails after the commit returns its error; the routed tasks stay
  // queued.
  virtual Result<std::vector<Delivery>> read_events(uint32_t max) = 0;
  virtual Result<RoutedClaim> commit_routed(std::vector<Delivery> read, const Batch& routed,
                                            const std::string& claim_topic, uint32_t claim_max) = 0;
  // The earliest due time of a ready message in (lane, topic), if any: lets the
  // dtask worker sleep exactly until the next task comes due.
  virtual Result<std::optional<WallMs>> next_due(Lane lane, const std::string& topic) = 0;
  // Commits a batch atomically. A batch that publishes or dead-letters anything
  // of its own (Batch::publish, Batch::dead) is durable on return. A batch that
  // only settles deliveries, with what rides on each settle, records consumer
  // progress: the SQLite backend fsyncs it only with sqlite.sync_progress, as
  // a power loss can only roll it back and hand those deliveries out again
  // (work repeated, nothing lost; docs/BROKER.md, "Durability").
  virtual Result<CommitReport> commit(const Batch& batch) = 0;
  // Extends the leases of held deliveries by the configured lease time.
  virtual Status extend(const std::vector<uint64_t>& tokens) = 0;
  // Returns expired leases of (lane, topic) held by others to ready with
  // attempt+1, or dead-letters them ("lease expired") when that exhausts
  // them. Returns how many were recovered. This broker's own leases are left
  // alone however late: their holder is alive (it is asking) and extends or
  // settles them; recovering them would run a task a second time beside
  // itself once its lease lapsed, say while the database was locked longer
  // than the lease. Those of an earlier incarnation: recover_previous_incarnation().
  virtual Result<uint32_t> recover_expired(Lane lane, const std::string& topic) = 0;
  // Releases every lease held by an earlier incarnation of this worker (same
  // lease owner prefix), as recover_expired() does, at startup.
  virtual Result<uint32_t> recover_previous_incarnation(Lane lane, const std::string& topic) = 0;
  // Queue depths per topic: those of `topics`, with zeros where nothing is
  // queued, and on SQLite every other topic it has messages for too
  // (RabbitMQ cannot list its queues); plus an events row always and, on
  // RabbitMQ, a row for the delay levels. `dead`: see DeadLetterCount.
  virtual Result<std::vector<QueueDepth>> depths(const std::vector<std::string>& topics, DeadLetterCount dead) = 0;
  virtual DeadLetterStore& dead_letters() = 0;
  // Retention (results.keep, results.keep_rows): deletes, in one short
  // transaction, at most `max_rows` of the oldest result rows that finished
  // before `finished_before` (0: no age bound) or that are not among the
  // newest `keep_newest` rows (0: no count bound). Returns how many went;
  // `max_rows` of them means there may be more. Dead letters and the done
  // counts of depths() are untouched. SQLite prunes its results table;
  // RabbitMQ keeps none (results go to the results exchange, whose stream
  // ages out by amqp.results_max_age), so it returns 0 there.
  virtual Result<uint32_t> prune_results(WallMs finished_before, uint64_t keep_newest, uint32_t max_rows) = 0;
  // The stored result records that `query` picks, oldest first (`ebatsctl
  // task show`, `results tail`). SQLite reads its results table; RabbitMQ
  // keeps no results it could query (they go to the results exchange and
  // stream), so it returns `unsupported` saying where to look.
  virtual Result<std::vector<ResultRow>> read_results(const ResultQuery& query) = 0;
};

// Something the backend reports on its own, outside any call: a lost
// connection, a reconnect, a broker that blocks publishers. Delivered on the
// backend's own thread (RabbitMQ's I/O thread): the handler must not call the
// broker (that would wait for the thread it runs on) and should not block.
struct BrokerEvent {
  enum class Level : uint8_t { info, warn, error } level = Level::info;
  std::string message;
};

struct BrokerOptions {
  std::string url;             // "sqlite:///path", "amqp://user@host:5672/vhost", "amqps://..."
  SqliteConfig sqlite;
  AmqpConfig amqp;
  std::map<std::string, SourceConfig> sources;  // AMQP: the config's custom schedulers (subscribe(Lane::source, name))
  std::string password_file;   // AMQP: file holding the password; else $EBATS_BROKER_PASSWORD
  uint64_t max_message_bytes = uint64_t{1} << 20;  // AMQP decodes deliveries with this limit
  std::function<void(const BrokerEvent&)> on_event;  // may be empty
  // Stable prefix identifying this worker across restarts, e.g.
  // "host/ntask/demo"; a per-incarnation suffix is added by the backend.
  std::string owner = "ebatsctl";
  bool create = true;          // create the schema if the file is new
  // claim_and_commit() reads at most `max` deliveries and stops early once
  // their bodies reach this many bytes (always at least one), so a batch of
  // large messages does not take max x limits.max_message_bytes of memory.
  uint64_t read_budget_bytes = uint64_t{64} << 20;
  // AMQP: a task delivery left unclaimed this long (more were delivered than
  // the worker's children can start) is published to its queue again and
  // acknowledged, before RabbitMQ's consumer_timeout closes the channel and
  // counts an attempt against every delivery it held; 0 = never
  // (Config::amqp_max_unclaimed_ms()).
  int64_t amqp_max_unclaimed_ms = 0;
};

// The options of the broker `config` names, for a process known as `owner`
// (e.g. "host/ntask/demo": lease owner on SQLite, connection name on AMQP).
EBATS_EXPORT BrokerOptions broker_options(const Config& config, std::string owner);

// Opens the backend named by options.url. Errors name the URL / path and say
// what to do (unwritable folder, database locked, unknown scheme, broker
// unreachable, wrong password). REQUIRES: `clock` is thread-safe for AMQP
// (SystemClock), whose I/O thread reads it.
EBATS_EXPORT Result<std::unique_ptr<Broker>> open_broker(const BrokerOptions& options, const Clock& clock);

}  // namespace ebats
