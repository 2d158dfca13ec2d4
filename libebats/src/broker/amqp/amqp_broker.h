// AmqpBroker: the RabbitMQ backend of broker.h (amqp:// and amqps:// URLs,
// docs/RABBITMQ.md). The scheduler, the workers and ebatsctl use it through
// the Broker interface exactly as they use SQLite.
//
// Every call runs on the session's I/O thread (amqp_session.h) while the
// caller waits, except claim(), which takes deliveries the I/O thread has
// already received. commit() publishes everything in the batch with
// publisher confirms and acknowledges a delivery only once everything that
// replaces it (its retry, its dead letter, its fanned-out tasks) is
// confirmed. Leases do not exist here: a delivery is held until acknowledged
// or until its channel closes, when RabbitMQ gives it to another consumer
// and counts the redelivery (x-delivery-count), which ebats counts as an
// attempt ("worker lost").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/amqp/amqp_session.h"
#include "ebats/broker.h"

namespace ebats {
namespace amqp {

class AmqpDeadLetters;

class AmqpBroker final : public Broker {
 public:
  // Connects to options.url with the password of options.password_file or
  // $EBATS_BROKER_PASSWORD. Errors name host, port and vhost.
  static Result<std::unique_ptr<AmqpBroker>> open(const BrokerOptions& options, const Clock& clock);
  ~AmqpBroker() override;

  Status setup(const std::vector<std::string>& topics) override;
  Status recount() override { return Status(); }  // RabbitMQ counts its queues itself
  Status subscribe(Lane lane, const std::string& topic, uint32_t prefetch) override;
  bool prefetch_counts_unsettled() const override { return true; }
  int wake_fd() const override { return session_->wake_fd(); }
  bool alive(uint64_t token) const override { return session_->alive(token); }
  Result<std::vector<Delivery>> claim_ahead(Lane lane, const std::string& topic, uint32_t max,
                                            int64_t lookahead_ms) override;
  Result<size_t> claim_and_commit(Lane lane, const std::string& topic, uint32_t max, const RouteFn& route) override;
  // The events received (held unacknowledged); then their batch committed as
  // claim_and_commit() commits it, and a claim (broker.h).
  Result<std::vector<Delivery>> read_events(uint32_t max) override;
  Result<RoutedClaim> commit_routed(std::vector<Delivery> read, const Batch& routed, const std::string& claim_topic,
                                    uint32_t claim_max) override;
  // RabbitMQ delivers delayed tasks when they come due: nothing to wait for.
  Result<std::optional<WallMs>> next_due(Lane, const std::string&) override { return std::optional<WallMs>(); }
  Result<CommitReport> commit(const Batch& batch) override;
  // No leases: a delivery stays ours while its channel is open.
  Status extend(const std::vector<uint64_t>&) override { return Status(); }
  Result<uint32_t> recover_expired(Lane, const std::string&) override { return 0u; }
  Result<uint32_t> recover_previous_incarnation(Lane, const std::string&) override { return 0u; }
  Result<std::vector<QueueDepth>> depths(const std::vector<std::string>& topics, DeadLetterCount dead) override;
  DeadLetterStore& dead_letters() override;
  // No results table to prune: results go to the results exchange, and the
  // results stream (amqp.results_stream) ages out by amqp.results_max_age.
  Result<uint32_t> prune_results(WallMs, uint64_t, uint32_t) override { return uint32_t{0}; }
  // Nothing to read either: `unsupported`, naming the results stream.
  Result<std::vector<ResultRow>> read_results(const ResultQuery& query) override;

  AmqpSession& session() { return *session_; }

 private:
  AmqpBroker(std::unique_ptr<AmqpSession> session, const BrokerOptions& options);
  // The I/O thread's half of commit().
  Result<CommitReport> commit_on_io(const Batch& batch);
  // Commits `batch`, built from `read` (deliveries taken unleased, as
  // claim_and_commit() takes them), and hands back to the session those of
  // `read` it did not settle (their replacement failed): they are routed again.
  Result<CommitReport> commit_taken(std::vector<Delivery> read, const Batch& batch);

  std::unique_ptr<AmqpSession> session_;
  uint64_t read_budget_bytes_;
  std::unique_ptr<AmqpDeadLetters> dead_letters_;
};

}  // namespace amqp
}  // namespace ebats
