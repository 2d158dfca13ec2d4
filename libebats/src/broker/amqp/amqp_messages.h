// How ebats' messages look on RabbitMQ, both ways. Pure functions, tested
// with values.
//
// Every publish builds fresh properties: persistent, content type, message
// id, type (the envelope kind, "dead" or "results") and timestamp. Headers of
// a received message, RabbitMQ's x-death above all, are never copied into a
// publish: a message dead-lettered through the same delay level twice with
// x-death would be dropped by RabbitMQ's cycle detection, and the headers
// would grow with every hop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "broker/amqp/amqp_connection.h"
#include "broker/amqp/topology.h"
#include "ebats/broker.h"
#include "ebats/result.h"

namespace ebats {
namespace amqp {

// Headers of a dead letter in the dead-letter stream.
constexpr const char* kReasonHeader = "x-ebats-reason";
constexpr const char* kErrorHeader = "x-ebats-error";
constexpr const char* kKindHeader = "x-ebats-kind";
constexpr const char* kTopicHeader = "x-ebats-topic";
constexpr const char* kNameHeader = "x-ebats-name";
constexpr const char* kAttemptsHeader = "x-ebats-attempts";
constexpr const char* kFirstSeenHeader = "x-ebats-first-seen";
constexpr const char* kDeadAtHeader = "x-ebats-dead-at";
// A record in the dead-letter stream that settles earlier entries (replayed
// or purged): its body is {"settled":[offsets]} or {"upto":offset}.
constexpr const char* kTombstoneType = "ebats-tombstone";
// A record a reader appends to a stream to find, by reading up to it, the end
// of what the stream held when the read began (a stream's message count lags
// by seconds). Readers skip markers.
constexpr const char* kMarkerType = "ebats-marker";
// The routing key a source's message came with, kept when ebats sends it
// back to the source's queue (which changes the routing key).
constexpr const char* kSourceRoutingKeyHeader = "x-ebats-routing-key";
// RabbitMQ's own headers that ebats reads.
constexpr const char* kDeliveryCountHeader = "x-delivery-count";
constexpr const char* kStreamOffsetHeader = "x-stream-offset";
constexpr const char* kFirstDeathReasonHeader = "x-first-death-reason";

// Longest error text kept in a dead letter's header (the header frame must
// fit in one AMQP frame).
constexpr size_t kMaxHeaderText = 4096;

// The message publishing `m` at `now`: events to the events exchange, tasks
// to their lane (ntask exchange, or the delay chain / dtask exchange).
OutMessage out_message(const OutMsg& m, const Topology& topology, WallMs now);
// A dead letter for the dead-letter exchange.
OutMessage dead_letter_message(const DeadLetter& d, const Topology& topology);
// Result records as JSON lines, in messages of at most `max_body` bytes each
// (one record longer than that gets a message of its own), not mandatory:
// they go to whoever bound a queue to the results exchange, or nowhere.
std::vector<OutMessage> result_messages(const std::vector<ResultRecord>& results, const Topology& topology,
                                        size_t max_body, WallMs now);
// The same from the records already encoded as JSON lines (Batch::results_jsonl):
// cut between lines, routed by the topic of `results` (all of one topic).
std::vector<OutMessage> result_messages(const std::string& jsonl, const std::string& topic, const Topology& topology,
                                        size_t max_body, WallMs now);
// A tombstone settling `offsets` of the dead-letter stream, or every offset
// up to `upto` when `offsets` is empty. Like markers, it goes through the
// dead-letter exchange (not the default exchange), so a user whose
// permissions cover only the prefix may write it.
OutMessage tombstone_message(const std::vector<uint64_t>& offsets, uint64_t upto, const Topology& topology);

// A delivery from a task or events queue, as claim() hands it out. Tasks are
// decoded to read id, attempt, due time; `redeliveries` is RabbitMQ's
// x-delivery-count, added to the attempt (a delivery that ended without an
// ack means its worker died). Bytes that are no valid envelope are handed out
// as they are (the worker dead-letters them).
Delivery delivery_from_message(Lane lane, const std::string& topic, const Incoming& in, uint64_t token,
                               uint64_t max_message_bytes);

// A dead letter read back from the stream: ebats' own (x-ebats-* headers) or
// one RabbitMQ dead-lettered (x-first-death-reason, e.g. the delivery limit).
DeadLetter dead_letter_from_message(const Incoming& in, uint64_t max_message_bytes);

// A marker for the stream behind `exchange` (the stream is bound to it with '#').
OutMessage marker_message(const std::string& exchange);

// What a tombstone settles.
struct Tombstone {
  std::vector<uint64_t> offsets;
  bool has_upto = false;
  uint64_t upto = 0;
};
// True when `in` is a tombstone; fills *out.
bool read_tombstone(const Incoming& in, Tombstone* out);

// The body with its envelope's attempt set to `attempt` (a released
// redelivery keeps the attempts its lost deliveries cost); the body as it is
// when it is no task envelope.
std::string with_attempt(const std::string& body, uint32_t attempt, uint64_t max_message_bytes);

}  // namespace amqp
}  // namespace ebats
