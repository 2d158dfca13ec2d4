// SqliteBroker: the embedded backend of broker.h, on one WAL-mode SQLite file
// shared by the scheduler, the workers and ebatsctl of one host
// (docs/BROKER.md).
//
// One connection per object (SQLITE_OPEN_NOMUTEX), so one object per thread;
// WAL checkpoints run on a thread of the object's own (sqlite_checkpointer.h).
// Every write is one BEGIN IMMEDIATE transaction: a claim of up to `max` rows,
// a whole Batch, an extend, a recovery. Prepared statements are cached for
// the life of the object. All times come from the injected Clock.
//
// Tokens: a claimed task's token is its row seq; a claimed event's token is
// its row seq with kEventTokenBit set, so commit() knows the table without
// being told the lane.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/sqlite/sqlite_checkpointer.h"
#include "broker/sqlite/sqlite_connection.h"
#include "broker/sqlite/sqlite_dead_letters.h"
#include "broker/sqlite/sqlite_schema.h"
#include "broker/sqlite/sqlite_wake.h"
#include "ebats/broker.h"

namespace ebats {
namespace sqlite {

constexpr uint64_t kEventTokenBit = uint64_t{1} << 63;

// The database path of a sqlite:// URL: "sqlite:///var/lib/ebats/ebats.db" →
// "/var/lib/ebats/ebats.db". invalid_argument when the path is missing.
Result<std::string> path_from_url(const std::string& url);

// How commit() and claim_and_commit() commit `batch`: Mode::progress when it
// only settles deliveries (with what rides on each settle), whose loss in a
// power cut hands them out again; Mode::immediate (durable on return) when it
// publishes or dead-letters anything of its own.
Transaction::Mode commit_mode(const Batch& batch);

// The refusal of Lane::source (the config loader refuses `sources` first).
constexpr const char* kSourcesNeedAmqp = "sources need an amqp:// or amqps:// broker";

class SqliteBroker final : public Broker {
 public:
  // Opens options.url (a sqlite:// URL), creating the file and schema when
  // options.create. REQUIRES: `clock` outlives the broker.
  static Result<std::unique_ptr<SqliteBroker>> open(const BrokerOptions& options, const Clock& clock);

  Result<std::vector<Delivery>> claim_ahead(Lane lane, const std::string& topic, uint32_t max,
                                            int64_t lookahead_ms) override;
  Result<std::optional<WallMs>> next_due(Lane lane, const std::string& topic) override;
  Result<CommitReport> commit(const Batch& batch) override;
  Result<size_t> claim_and_commit(Lane lane, const std::string& topic, uint32_t max, const RouteFn& route) override;
  // claim_and_commit()'s read of events; then one transaction: the topic's
  // tasks queued before claimed, the routed batch applied with the topic's
  // due tasks inserted leased while room lasts (broker.h).
  Result<std::vector<Delivery>> read_events(uint32_t max) override;
  Result<RoutedClaim> commit_routed(std::vector<Delivery> read, const Batch& routed, const std::string& claim_topic,
                                    uint32_t claim_max) override;
  Status extend(const std::vector<uint64_t>& tokens) override;
  Result<uint32_t> recover_expired(Lane lane, const std::string& topic) override;
  Result<uint32_t> recover_previous_incarnation(Lane lane, const std::string& topic) override;
  Result<std::vector<QueueDepth>> depths(const std::vector<std::string>& topics, DeadLetterCount dead) override;
  // The schema exists once the broker is open: nothing to declare.
  Status setup(const std::vector<std::string>&) override { return Status(); }
  // Counts the queued rows again into queue_counts (sqlite_schema.h).
  Status recount() override { return recount_queues(*connection_); }
  // Claims query the table; subscribing binds a wake socket for (lane,
  // topic) that commits adding work there make readable (sqlite_wake.h).
  // Where none can be bound (a folder not writable, a path too long for a
  // socket), the daemon polls, as the broker's events say. Sources (upstream
  // exchanges) exist only on RabbitMQ.
  Status subscribe(Lane lane, const std::string& topic, uint32_t prefetch) override;
  int wake_fd() const override { return wake_.fd(); }
  DeadLetterStore& dead_letters() override { return dead_letters_; }
  Result<uint32_t> prune_results(WallMs finished_before, uint64_t keep_newest, uint32_t max_rows) override;
  Result<std::vector<ResultRow>> read_results(const ResultQuery& query) override;

  // The lease owner of this incarnation: "<options.owner>/<pid>.<random hex>".
  const std::string& owner() const { return owner_; }
  const std::string& path() const { return connection_->path(); }

 private:
  enum class Recovery { expired, previous_incarnation };

  SqliteBroker(std::unique_ptr<Connection> connection, const BrokerOptions& options, const Clock& clock);

  // How claimed rows are held: leased (state 'leased', our owner, lease_until),
  // or only read (claim_and_commit), so that a settle is an ack of a row that
  // must still be 'ready'.
  enum class Claim { leased, unleased };
  // Probes without the write lock: false when nothing is there to claim.
  Result<bool> anything_to_claim(Lane lane, const std::string& topic, WallMs due_by);
  // Leases up to `max` rows inside the open transaction, sorted by due time.
  // Tasks due by `due_by` (now + lookahead); `now` stamps the lease.
  Status claim_rows(Lane lane, const std::string& topic, uint32_t max, WallMs now, WallMs due_by,
                    std::vector<Delivery>* out, Claim claim);
  Status claim_task_rows(Lane lane, const std::string& topic, uint32_t max, WallMs now, WallMs due_by,
                         std::vector<Delivery>* out, Claim claim);
  Status claim_event_rows(uint32_t max, WallMs now, std::vector<Delivery>* out, Claim claim);
  // commit_routed(): the tasks of (ntask, topic) due by then that a batch
  // publishes are inserted leased to this broker, while `room` lasts, and
  // appended to `out` as deliveries.
  struct LeaseInserted {
    const std::string& topic;
    size_t room = 0;
    std::vector<Delivery>& out;
  };
  // Applies a batch inside the open transaction; settles refer to rows held as `claim` says.
  // Adds to woken_ the (lane, topic) of every message it inserts ready.
  Status apply_batch(const Batch& batch, WallMs now, CommitReport* report, Claim claim,
                     LeaseInserted* lease = nullptr);
  // Inserts one message for apply_batch().
  Status publish_row(const OutMsg& msg, WallMs now, CommitReport* report, LeaseInserted* lease);
  // After a commit: wakes the daemons of woken_, and empties it.
  void wake_written();
  // Adds the ok results of a batch to topic_totals, one row per topic.
  Status add_done(const std::vector<ResultRecord>& results);
  // True when the settle took effect (the lease was still ours), false when stale.
  Result<bool> apply_settle(const Settle& settle, WallMs now, Claim claim);
  // How many of the `ready` tasks of the ntask lane of `topic` (queue_counts)
  // are due by `now`. REQUIRES: inside the read transaction of depths().
  Result<uint64_t> count_due_tasks(const std::string& topic, uint64_t ready, WallMs now);
  Result<uint32_t> recover(Lane lane, const std::string& topic, Recovery kind);
  // One recovery transaction: the expired leases, or those of `owner`, an
  // earlier incarnation whose process is gone.
  Result<uint32_t> recover_leases(Lane lane, const std::string& topic, Recovery kind, const std::string& owner);
  Result<uint32_t> recover_tasks(Lane lane, const std::string& topic, Recovery kind, WallMs now,
                                 const std::string& owner);
  Result<uint32_t> recover_events(Recovery kind, WallMs now, const std::string& owner);
  // Bind the parameters of the recovery statements (see sqlite_broker.cpp).
  void bind_task_recovery(StatementUse& use, Lane lane, const std::string& topic, WallMs now,
                          const std::string& owner) const;
  void bind_event_recovery(StatementUse& use, Recovery kind, WallMs now, const std::string& owner) const;
  // True when some row matches the (cheap, indexed, read-only) query `sql`
  // bound by `bind`: lets idle polls skip the write lock.
  template <class Bind>
  Result<bool> any_row(const std::string& sql, Bind bind);

  std::unique_ptr<Connection> connection_;
  const Clock& clock_;
  int64_t lease_ms_;
  uint64_t read_budget_bytes_;  // Claim::unleased reads stop once their bodies reach it
  std::string owner_prefix_;  // options.owner + "/"
  std::string owner_;
  std::function<void(const BrokerEvent&)> on_event_;  // may be empty
  WakeListener wake_;  // open once subscribe() succeeded
  std::vector<std::pair<Lane, std::string>> subscriptions_;  // what wake_ listens for: where releases go back to
  WakeSender waker_;
  std::vector<std::pair<Lane, std::string>> woken_;  // lanes written by the open transaction
  DeadLetters dead_letters_;
  std::unique_ptr<Checkpointer> checkpointer_;  // null: SQLite's automatic checkpoint
};

}  // namespace sqlite
}  // namespace ebats
