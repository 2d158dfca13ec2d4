#include "broker/amqp/amqp_dead_letters.h"

#include <algorithm>
#include <set>

#include "broker/amqp/amqp_messages.h"
#include "broker/dead_letter_errors.h"
#include "ebats/envelope.h"

namespace ebats {
namespace amqp {
namespace {

// What a call returns when its work never ran or ended in an exception on the
// I/O thread (AmqpSession::run): never a success, nor a count of 0.
Status not_run() { return Status::internal("the dead-letter operation did not complete (the process is stopping, or out of memory)"); }

}  // namespace

// The dead letters' lock (Topology::dead_lock_queue()), held on the I/O
// thread by every call that settles entries (replays and purges), so that two
// of them at once, from any hosts, never replay one entry twice: the second
// reads the stream once the first has released the lock, its tombstone
// confirmed. A connection lost meanwhile loses the lock (RabbitMQ deletes an
// exclusive queue with its connection): held() says so.
class DeadLetterLock {
 public:
  explicit DeadLetterLock(AmqpSession& session)
      : session_(session), name_(session.topology().dead_lock_queue()) {
    status_ = session.take_lock(name_, session.deadline());
    generation_ = session.connection_generation();
    if (status_.code() == StatusCode::busy) {
      status_ = Status::error(StatusCode::busy,
                              "another process is replaying or purging these dead letters (it holds the exclusive "
                              "queue '" + name_ + "'); gave up waiting for it after broker.amqp.confirm_timeout: "
                              "try again once it is done (if none runs, a queue of that name that is not "
                              "exclusive is in the way: delete it)");
    }
  }
  ~DeadLetterLock() {
    if (held()) session_.release_lock(name_);
  }
  DeadLetterLock(const DeadLetterLock&) = delete;
  DeadLetterLock& operator=(const DeadLetterLock&) = delete;

  const Status& status() const { return status_; }
  bool held() const { return status_.ok() && session_.connection_generation() == generation_; }
  Status lost() const {
    return Status::io("the connection to RabbitMQ was lost during the operation, and with it the lock on the dead "
                      "letters; nothing more was changed: run it again");
  }

 private:
  AmqpSession& session_;
  std::string name_;
  Status status_;
  uint64_t generation_ = 0;
};

Result<AmqpDeadLetters::Snapshot> AmqpDeadLetters::read_on_io() {
  if (!session_.connected_by(session_.deadline())) {
    return Status::io("RabbitMQ is unavailable: " + session_.last_error());
  }
  Status declared = session_.declare("dead", session_.topology().dead_letters());
  if (!declared.ok()) return declared;
  auto stream = session_.read_stream(session_.topology().dead_stream(), session_.topology().dead_exchange());
  if (!stream.ok()) return stream.status();
  Snapshot snapshot;
  std::set<uint64_t> settled;
  bool has_upto = false;
  uint64_t upto = 0;
  std::vector<DeadLetterEntry> all;
  for (const StreamEntry& e : *stream) {
    snapshot.empty_stream = false;
    snapshot.last_offset = std::max(snapshot.last_offset, e.offset);
    Tombstone t;
    if (read_tombstone(e.message, &t)) {
      settled.insert(t.offsets.begin(), t.offsets.end());
      if (t.has_upto) {
        upto = has_upto ? std::max(upto, t.upto) : t.upto;
        has_upto = true;
      }
      continue;
    }
    DeadLetterEntry entry;
    entry.seq = e.offset;
    entry.letter = dead_letter_from_message(e.message, session_.max_message_bytes());
    all.push_back(std::move(entry));
  }
  for (DeadLetterEntry& entry : all) {
    if (settled.count(entry.seq) || (has_upto && entry.seq <= upto)) continue;
    snapshot.entries.push_back(std::move(entry));
  }
  return snapshot;
}

Result<std::vector<DeadLetterEntry>> AmqpDeadLetters::list(uint32_t limit) {
  Result<Snapshot> snapshot = Status::internal("not run");
  session_.run([&] { snapshot = read_on_io(); });
  if (!snapshot.ok()) return snapshot.status();
  std::vector<DeadLetterEntry> out(snapshot->entries.rbegin(), snapshot->entries.rend());  // newest first
  if (limit > 0 && out.size() > limit) out.resize(limit);
  return out;
}

Result<DeadLetterEntry> AmqpDeadLetters::show(uint64_t seq) {
  Result<Snapshot> snapshot = Status::internal("not run");
  session_.run([&] { snapshot = read_on_io(); });
  if (!snapshot.ok()) return snapshot.status();
  for (DeadLetterEntry& e : snapshot->entries) {
    if (e.seq == seq) return std::move(e);
  }
  return no_dead_letter(seq);
}

Result<OutMsg> AmqpDeadLetters::replacement(const DeadLetterEntry& entry, WallMs now) const {
  const DeadLetter& d = entry.letter;
  const std::string number = std::to_string(entry.seq);
  if (d.kind == "raw") {
    return raw_dead_letter_not_replayable(entry);
  }
  DecodeResult r = decode_envelope(d.body, session_.max_message_bytes());
  if (!r.ok()) {
    return Status::invalid("dead letter " + number + " does not hold a valid envelope (" + r.detail +
                           ") and cannot be replayed");
  }
  OutMsg m;
  m.id = r.envelope.id;
  if (r.envelope.kind == EnvelopeKind::task) {
    // Due now, attempt 0, same id: the attempts start over.
    Envelope e = std::move(r.envelope);
    e.attempt = 0;
    e.due_at = now;
    m.lane = Lane::ntask;
    m.topic = e.topic;
    m.name = e.task;
    m.due_at = now;
    m.max_attempts = e.max_attempts;
    m.body = encode_envelope(e);
  } else {
    m.lane = Lane::events;
    m.name = r.envelope.event;
    m.body = d.body;
  }
  return m;
}

Status AmqpDeadLetters::tombstone_on_io(const std::vector<uint64_t>& offsets, uint64_t upto) {
  std::vector<Publish> tombstone(1);
  tombstone[0].message = tombstone_message(offsets, upto, session_.topology());
  if (!session_.publish_all(tombstone, session_.deadline())) return Status::io(tombstone[0].failure);
  return Status();
}

Result<uint64_t> AmqpDeadLetters::replay_on_io(const std::vector<DeadLetterEntry>& entries, WallMs now,
                                                const DeadLetterLock& lock) {
  std::vector<Publish> replays;
  std::vector<uint64_t> offsets;
  for (const DeadLetterEntry& e : entries) {
    auto m = replacement(e, now);
    if (!m.ok()) continue;  // not replayable: stays listed
    Publish p;
    p.message = out_message(*m, session_.topology(), now);
    replays.push_back(std::move(p));
    offsets.push_back(e.seq);
  }
  if (replays.empty()) return uint64_t{0};
  if (!lock.held()) return lock.lost();
  // The replacements first, then one tombstone for those RabbitMQ confirmed
  // (also when the connection, and the lock, went meanwhile: the tombstone
  // is what keeps a later replay from repeating them).
  session_.publish_all(replays, session_.deadline());
  std::vector<uint64_t> done;
  std::string failure;
  for (size_t i = 0; i < replays.size(); ++i) {
    if (replays[i].confirmed) {
      done.push_back(offsets[i]);
    } else if (failure.empty()) {
      failure = replays[i].failure;
    }
  }
  if (!done.empty()) {
    Status marked = tombstone_on_io(done, 0);
    if (!marked.ok()) {
      return Status::io(std::to_string(done.size()) + " dead letter(s) were replayed but could not be marked as "
                        "replayed (" + marked.message() + "); they are still listed: purge them, or a second replay "
                        "repeats them");
    }
  }
  if (!failure.empty()) {
    return Status::io("replayed " + std::to_string(done.size()) + " of " + std::to_string(replays.size()) +
                      " dead letter(s); the rest failed: " + failure);
  }
  return static_cast<uint64_t>(done.size());
}

Result<uint64_t> AmqpDeadLetters::purge_on_io(const std::vector<uint64_t>& offsets, uint64_t upto, uint64_t count,
                                               const DeadLetterLock& lock) {
  if (count == 0) return uint64_t{0};
  if (!lock.held()) return lock.lost();
  Status marked = tombstone_on_io(offsets, upto);
  if (!marked.ok()) return marked.with_context("purging dead letters");
  return count;
}

template <class Settle>
Result<uint64_t> AmqpDeadLetters::settle_locked(Settle settle) {
  Result<uint64_t> result = not_run();
  session_.run([&] {
    DeadLetterLock lock(session_);
    if (!lock.status().ok()) {
      result = lock.status();
      return;
    }
    auto snapshot = read_on_io();  // once the lock is held: after the last holder's tombstone
    result = snapshot.ok() ? settle(*snapshot, lock) : Result<uint64_t>(snapshot.status());
  });
  return result;
}

Status AmqpDeadLetters::replay(uint64_t seq, WallMs now) {
  auto replayed = settle_locked([&](const Snapshot& snapshot, const DeadLetterLock& lock) -> Result<uint64_t> {
    auto found = std::find_if(snapshot.entries.begin(), snapshot.entries.end(),
                              [&](const DeadLetterEntry& e) { return e.seq == seq; });
    if (found == snapshot.entries.end()) return no_dead_letter(seq);
    auto m = replacement(*found, now);  // says why one cannot be replayed
    if (!m.ok()) return m.status();
    return replay_on_io({*found}, now, lock);
  });
  return replayed.ok() ? Status() : replayed.status();
}

Result<uint64_t> AmqpDeadLetters::replay_all(WallMs now) {
  return settle_locked([&](const Snapshot& snapshot, const DeadLetterLock& lock) {
    return replay_on_io(snapshot.entries, now, lock);
  });
}

Result<uint64_t> AmqpDeadLetters::purge() {
  return settle_locked([&](const Snapshot& snapshot, const DeadLetterLock& lock) {
    return purge_on_io({}, snapshot.last_offset, snapshot.entries.size(), lock);
  });
}

namespace {

// The entries of `snapshot` whose offsets are in `seqs`, oldest first.
std::vector<DeadLetterEntry> selected(const AmqpDeadLetters::Snapshot& snapshot, const std::vector<uint64_t>& seqs) {
  const std::set<uint64_t> wanted(seqs.begin(), seqs.end());
  std::vector<DeadLetterEntry> out;
  for (const DeadLetterEntry& e : snapshot.entries) {
    if (wanted.count(e.seq)) out.push_back(e);
  }
  return out;
}

}  // namespace

Result<uint64_t> AmqpDeadLetters::replay_selected(const std::vector<uint64_t>& seqs, WallMs now) {
  return settle_locked([&](const Snapshot& snapshot, const DeadLetterLock& lock) {
    return replay_on_io(selected(snapshot, seqs), now, lock);
  });
}

Result<uint64_t> AmqpDeadLetters::purge_selected(const std::vector<uint64_t>& seqs) {
  return settle_locked([&](const Snapshot& snapshot, const DeadLetterLock& lock) {
    std::vector<uint64_t> offsets;
    for (const DeadLetterEntry& e : selected(snapshot, seqs)) offsets.push_back(e.seq);
    return purge_on_io(offsets, 0, offsets.size(), lock);
  });
}

}  // namespace amqp
}  // namespace ebats
