#include "supervisor/worker.h"

#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>

#include <boost/algorithm/string/join.hpp>

#include "core/poll_backoff.h"
#include "daemon/config_reload.h"
#include "daemon/file_identity.h"
#include "daemon/host_name.h"
#include "metrics/daemon_metrics.h"
#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "ebats/result.h"
#include "ebats/retry.h"
#include "envelope/task_message.h"
#include "results/results_file.h"
#include "scheduler/event_router.h"
#include "scheduler/routing_log.h"
#include "supervisor/broker_thread.h"
#include "supervisor/child_process.h"
#include "supervisor/frame.h"
#include "supervisor/plugin_probe.h"
#include "supervisor/prefetch.h"

namespace ebats {
namespace {

using std::chrono::milliseconds;
using std::chrono::microseconds;
using std::chrono::duration_cast;

constexpr size_t kFlushCompletions = 1024;      // commit at least this often (a windowed broker: see flush_completions_)...
constexpr milliseconds kFlushAge{20};           // ...or once the oldest completion is this old
// With a broker that signals new work, the look for work nobody signalled
// (a writer without wake-ups) comes this often, or every poll_interval if longer.
constexpr milliseconds kSignalledLookEvery{1000};
constexpr uint32_t kMinEventsPerLook = 64;      // route_events: a look that claims reads at least this many events
constexpr int64_t kTargetPipelineUs = 5000;     // work queued inside one child, in time
constexpr uint32_t kMaxAutoHeldPerChild = 512;  // automatic prefetch: at most this many per child
constexpr size_t kMaxPipeline = 32;
constexpr size_t kMaxResultParams = 4096;
constexpr std::chrono::seconds kFinishCommitsFor{20};  // stopping: the last commits get this long
constexpr std::chrono::seconds kDatabaseCheckEvery{2};  // SQLite: is the file still there?
constexpr milliseconds kResultsRetryFirst{100};  // a results file that failed: first retry after this...
constexpr milliseconds kResultsRetryMax{2000};   // ...then doubling up to this

// ppoll()'s timeout: until `until`, to the nanosecond (a due task starts
// as its millisecond begins, not up to one poll() millisecond later), at most a minute.
timespec poll_timeout(SteadyTime now, SteadyTime until) {
  const int64_t ns = until <= now ? 0 : std::min<int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(until - now).count(), int64_t{60'000'000'000});
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

std::string cut_params(const std::string& params) {
  if (params.size() <= kMaxResultParams) return params;
  return "{\"_truncated\":true,\"bytes\":" + std::to_string(params.size()) + "}";
}

}  // namespace

class Worker::Impl {
 public:
  Impl(WorkerSetup setup, Broker& broker, const Clock& clock, const Logger& log, const ServiceNotifier& notifier)
      : setup_(std::move(setup)),
        config_(setup_.config),
        settings_(config_->worker(setup_.topic)),
        broker_(broker),
        clock_(clock),
        log_(log),
        notifier_(notifier),
        host_(host_name()),
        child_title_(std::string("ebats-") + lane_name(setup_.lane) + "-worker child, topic " + setup_.topic),
        metrics_(setup_.metrics, setup_.lane),
        routes_(setup_.lane == Lane::ntask && settings_.route_events),
        routing_log_(log),
        routing_metrics_(routes_ ? setup_.metrics : nullptr) {
    apply_settings();
    children_.resize(std::max<uint32_t>(1, settings_.processes));
    lease_ = milliseconds(config_->sqlite.lease_ms);
    poll_interval_ = milliseconds(config_->sqlite.poll_interval_ms);
    claim_backoff_ = PollBackoff(poll_interval_);
    if (setup_.lane == Lane::dtask) lookahead_ = poll_interval_;
  }

  Status run(SignalFd& signals);

 private:
  struct Job {
    Delivery delivery;
    Envelope env;
  };
  struct Running {
    Job job;
    uint64_t seq = 0;
  };
  struct Slot {
    std::optional<ChildProcess> proc;
    std::optional<FrameBuffer> in;
    std::string out;
    size_t out_pos = 0;
    std::deque<Running> pipeline;
    bool ready = false;
    bool soft_sent = false;
    bool killed_for_timeout = false;
    uint64_t timed_out_seq = 0;  // the task it was killed for (killed_for_timeout)
    bool socket_closed = false;  // EOF seen: poll only the pidfd until the exit
    bool killed_for_start = false;  // not ready within start_timeout: killed
    SteadyTime started_at{};
    SteadyTime head_since{};
    SteadyTime respawn_at{};
    uint32_t startup_failures = 0;
    uint64_t generation = 0;  // of the config it was started with
    bool retiring = false;    // a reload replaces it: no new task; it exits once idle
    bool input_ended = false;  // retiring and idle: EOF sent
  };
  struct Pending {
    Batch batch;
    std::string lines;  // result records not yet in the results file
    SteadyTime oldest{};
    size_t completions = 0;
    // Empties it and keeps the buffers' memory for the next batch: a batch of
    // 1,000 results is some 400 KB, which malloc would otherwise hand back to
    // the kernel and fault in again, zeroed, for the next one.
    void clear() {
      batch.publish.clear();
      batch.dead.clear();
      batch.results.clear();
      batch.settle.clear();
      lines.swap(batch.results_jsonl);  // flush() lent it the lines' buffer: one buffer of lines per batch, not two
      batch.results_jsonl.clear();
      lines.clear();
      oldest = SteadyTime{};
      completions = 0;
    }
  };
  // What a claim call brings back to the loop.
  struct Claimed {
    uint32_t want = 0;
    Result<std::vector<Delivery>> got = std::vector<Delivery>();
    Result<std::optional<WallMs>> next_due = std::optional<WallMs>();
    bool routed = false;        // commit_routed(): events were looked for too
    size_t events = 0;          // ...and this many read and routed
    RouteSummary summary;
  };

  // --- reload ---
  // SIGHUP: loads the config again and starts a roll (run by the loop's next round).
  void reload();
  void apply_settings();  // settings_ and max_capacity_ from config_
  // One step of replacing old children by new ones; ends the roll when done.
  void roll(SteadyTime now);
  void abort_roll(const std::string& why, std::initializer_list<LogField> detail);
  void remove_retired();
  // Outside a roll, as many children as `processes` that are not retiring:
  // an abandoned roll can retire more than it put back.
  void keep_child_count(SteadyTime now);
  // --- children ---
  void spawn_due_children(SteadyTime now);
  void on_child_readable(Slot& s);
  void on_child_exit(Slot& s, SteadyTime now);
  void handle_frame(Slot& s, const FrameBuffer::Frame& f);
  void write_child(Slot& s);
  void check_timeouts(SteadyTime now);
  size_t pipeline_depth() const;
  size_t capacity() const;  // how many tasks to hold (claimed, queued or running)
  // --- tasks ---
  bool may_claim() const;
  // Posts a claim when one is due and may happen. A worker that routes events
  // starts a look instead (read, route, then commit with a claim), and looks
  // even while it cannot claim, so that the other topics' tasks never wait
  // for its children.
  void claim(SteadyTime now);
  void on_claimed(Claimed& claimed);
  // How many tasks a claim now may take (0 when none may be claimed).
  uint32_t claim_room() const;
  // routes_: posts a read of events (Broker::read_events), as many as `room`
  // tasks need (at least kMinEventsPerLook; kEventBatch with room 0).
  void read_events(uint32_t room);
  // routes_: the `asked` events read came back; routes them on the loop's
  // thread into routed_ahead_ and commits it (commit_look()).
  void route_read(uint32_t asked, Result<std::vector<Delivery>> read);
  // routes_: posts routed_ahead_'s commit with a claim (Broker::commit_routed)
  // once the topic has room for its tasks, or at once when `route_only`
  // (routed with no room: its tasks go in ready) or stopping; after a full
  // read, also the next read, whose routing overlaps this commit.
  void commit_look(SteadyTime now, bool route_only);
  // A commit_routed() came back: logs what the routing did, and when to look again.
  void on_routed(const Claimed& claimed, SteadyTime now);
  // When a route-only look is due (SteadyTime::max() if never). While the
  // worker claims, its claims route the events, and the tasks of its topic
  // are inserted leased; a route-only look, which inserts them ready to be
  // claimed by a second write, is for when claims stop (its children all
  // busy), so that the other topics do not wait: one poll_interval after the
  // last claim at the earliest. Its own commits wake the worker too.
  SteadyTime route_only_at() const;
  void enqueue_by_due(Job job);
  void dispatch(SteadyTime now);
  void complete(const Job& job, const AttemptFacts& facts, WallMs started, WallMs finished, int64_t time_ms, int64_t pid);
  void release(const Job& job, const std::string& why, int64_t pid);
  void dead_letter_undecodable(const Delivery& d, const DecodeResult& r);
  void dead_letter_delivery(const Delivery& d, const std::string& reason, const std::string& error);
  // --- broker ---
  SteadyTime flush_due_at() const;
  void flush(SteadyTime now, bool force);
  void on_committed(Pending& sent, const Result<CommitReport>& report);
  // Retries the result lines the results file refused, when due (or now, on
  // the last try before stopping); taking tasks resumes once they are in.
  void write_results_backlog(SteadyTime now, bool last_try);
  void finish_commits();
  void extend_leases();
  void recover_expired();
  std::vector<uint64_t> held_tokens() const;
  // --- lifecycle ---
  void begin_drain(SteadyTime now);
  bool drained() const;
  size_t held() const;
  size_t ready_children() const;
  size_t active_children() const;  // the children not being replaced
  bool child_with_room() const;  // a ready child whose pipeline can take one more task

  WorkerSetup setup_;
  std::shared_ptr<const Config> config_;  // replaced by a reload
  WorkerConfig settings_;
  Broker& broker_;
  const Clock& clock_;
  const Logger& log_;
  const ServiceNotifier& notifier_;
  std::string host_;
  std::string child_title_;  // what `ps` shows for a child: "ebats-ntask-worker child, topic demo"
  std::optional<ResultsFile> results_;
  // Result lines committed to the broker but not yet in the results file (it
  // could not be written: a full disk). While any wait, the worker takes no
  // new task; write_results_backlog() retries with a growing pause.
  std::string results_backlog_;
  size_t results_backlog_records_ = 0;
  SteadyTime next_results_try_{};
  milliseconds results_backoff_{0};
  // Every broker call after startup runs here; the loop only posts and reaps.
  std::unique_ptr<BrokerThread> broker_thread_;
  size_t claims_in_flight_ = 0;  // claims (routes_: reads of events and their commits) posted, not yet back
  bool commit_in_flight_ = false;
  bool extend_in_flight_ = false;
  bool recover_in_flight_ = false;
  std::vector<uint64_t> committing_tokens_;  // settles of the commit in flight

  std::vector<Slot> children_;
  std::deque<Job> queue_;
  Pending pending_;
  Pending spare_;  // an emptied batch whose buffers the next one reuses
  uint32_t max_capacity_ = 0;  // prefetch, or the automatic prefetch's upper bound
  size_t flush_completions_ = kFlushCompletions;  // a commit once this many have finished (or kFlushAge)
  milliseconds lease_{30'000};
  milliseconds poll_interval_{50};
  PollBackoff claim_backoff_{poll_interval_};  // rebuilt in the constructor with the configured interval
  milliseconds lookahead_{0};  // dtask: claim what comes due within one poll interval
  uint64_t next_seq_ = 1;
  double avg_task_us_ = 0.0;  // moving average of a task's run time; 0 until one has been measured
  uint64_t claimed_body_bytes_ = 0;  // largest body of the latest non-empty claim; 0 until one
  SteadyTime next_claim_at_{};
  SteadyTime next_route_at_{};  // routes_: the next look for events while no claim may happen
  SteadyTime last_claim_posted_at_{};  // the latest look that claimed
  // routes_: events read and routed, waiting for the topic to have room.
  struct RoutedLook {
    std::vector<Delivery> read;
    Batch batch;
    RouteSummary summary;
    bool full = false;  // as many events as asked for were read: more may wait
  };
  std::shared_ptr<RoutedLook> routed_ahead_;
  SteadyTime next_flush_try_{};
  milliseconds flush_backoff_{0};
  SteadyTime next_extend_{};
  SteadyTime next_recover_{};
  SteadyTime next_watchdog_{};
  std::optional<FileIdentity> database_;  // SQLite: the file opened, checked now and then
  SteadyTime next_database_check_{};
  bool announced_ready_ = false;
  std::vector<std::string> last_load_errors_;
  uint64_t generation_ = 0;  // the config's: children of an older one are replaced
  std::string fingerprint_;  // of the config and plugin files the children run (reload_fingerprint)
  bool rolling_ = false;
  std::shared_ptr<const Config> previous_config_;  // kept while rolling, for an aborted roll
  std::vector<std::string> last_unhandled_;  // registrations of the topic the latest READY could not run
  Status setup_failure_;  // set when the first children cannot run the topic's tasks: run() returns it
  bool draining_ = false;
  bool interrupting_ = false;
  SteadyTime drain_deadline_{};
  SteadyTime kill_deadline_{};
  uint64_t executed_ = 0;
  uint64_t dropped_stale_ = 0;        // deliveries dropped unstarted: their channel closed
  metrics::WorkerMetrics metrics_;
  SteadyTime commit_posted_at_{};
  const bool routes_;  // workers.<topic>.route_events (ntask lane), fixed at start
  RoutingLog routing_log_;
  metrics::RoutingMetrics routing_metrics_;  // routes_ only
  void update_child_gauges();
};

// ------------------------------------------------------------------- reload

void Worker::Impl::apply_settings() {
  settings_ = config_->worker(setup_.topic);
  const uint32_t procs = std::max<uint32_t>(1, settings_.processes);
  max_capacity_ = settings_.prefetch > 0 ? settings_.prefetch
                                         : std::max<uint32_t>(2 * procs, std::min<uint32_t>(config_->sqlite.claim_batch,
                                                                                          kMaxAutoHeldPerChild * procs));
}

void Worker::Impl::reload() {
  std::string fingerprint = reload_fingerprint(*config_);
  if (fingerprint == fingerprint_) {
    // logrotate's SIGHUP, a storm of them, or a file already refused
    log_.debug("SIGHUP: config and plugin files unchanged since the last reload; nothing to reload");
    metrics_.reload("unchanged");
    return;
  }
  fingerprint_ = fingerprint;
  notifier_.reloading();
  ConfigReload r = reload_config(*config_);
  if (!r.config) {
    log_.error("reload refused: the config has errors; the children keep the running configuration",
               {{"config", config_->path}, {"errors", boost::algorithm::join(r.errors, "; ")}});
    notifier_.ready(std::string(lane_name(setup_.lane)) + " worker for topic " + setup_.topic +
                    " running; reload refused (config errors), running the previous configuration");
    metrics_.reload("refused");
    return;
  }
  if (r.config->worker(setup_.topic).route_events != config_->worker(setup_.topic).route_events) {
    r.restart_needed.push_back("workers." + setup_.topic + ".route_events");
  }
  for (const auto& what : r.restart_needed) {
    log_.warn("reload: a setting changed that applies only at a restart; keeping its running value",
              {{"setting", what}});
  }
  if (!rolling_) previous_config_ = config_;  // a reload during a roll: an abort goes back to before the first
  const std::string old_results = config_->results_file;
  config_ = std::move(r.config);
  apply_settings();
  if (config_->results_file != old_results) {
    auto file = ResultsFile::open(config_->results_file);
    if (file.ok()) {
      results_.emplace(std::move(file).value());
    } else {
      log_.error("reload: cannot open the new results file; keeping the old one", {{"error", file.status().message()}});
    }
  }
  generation_++;
  rolling_ = true;
  metrics_.reload("ok");
  log_.info("config reloaded; replacing the children one at a time",
            {{"config", config_->path}, {"processes", std::to_string(std::max<uint32_t>(1, settings_.processes))}});
  notifier_.ready(std::string(lane_name(setup_.lane)) + " worker for topic " + setup_.topic +
                  " running; configuration reloaded");
  // The loop's next round starts the roll: children_ may not grow while the
  // loop holds pointers to its slots.
}

void Worker::Impl::update_child_gauges() {
  size_t busy = 0, idle = 0, starting = 0;
  for (const auto& s : children_) {
    if (!s.proc) continue;
    if (!s.ready) {
      ++starting;
    } else if (s.pipeline.empty()) {
      ++idle;
    } else {
      ++busy;
    }
  }
  metrics_.children(busy, idle, starting);
}

size_t Worker::Impl::active_children() const {
  size_t n = 0;
  for (const auto& s : children_) n += s.retiring ? 0 : 1;
  return std::max<size_t>(n, 1);
}

void Worker::Impl::roll(SteadyTime now) {
  if (draining_) return;
  const size_t target = std::max<uint32_t>(1, settings_.processes);
  size_t current = 0, old = 0;
  Slot* oldest_idle = nullptr;  // the old child to retire next: the one with the least work
  for (auto& s : children_) {
    if (s.retiring) continue;
    if (s.generation == generation_) {
      if (!s.proc || !s.ready) return;  // one new child at a time: wait until it is ready
      ++current;
      continue;
    }
    ++old;
    if (!oldest_idle || s.pipeline.size() < oldest_idle->pipeline.size()) oldest_idle = &s;
  }
  if (oldest_idle && current + old > target) {
    oldest_idle->retiring = true;  // no new task; it exits once its pipeline is empty
    return;
  }
  if (current < target) {
    Slot fresh;
    fresh.generation = generation_;
    fresh.respawn_at = now;
    children_.push_back(std::move(fresh));
    return;
  }
  rolling_ = false;
  previous_config_.reset();
  log_.info("children replaced: running the reloaded configuration", {{"processes", std::to_string(current)}});
}

void Worker::Impl::abort_roll(const std::string& why, std::initializer_list<LogField> detail) {
  if (!rolling_ || !previous_config_) return;
  std::vector<std::pair<std::string, std::string>> copy(detail.begin(), detail.end());
  config_ = std::move(previous_config_);
  apply_settings();
  rolling_ = false;
  // The children started for the refused config go: one still starting has
  // taken nothing and is killed (remove_retired), a ready one finishes what it
  // took, as a replaced child does (a task is never interrupted by a reload).
  // The old ones count as current again, but one already told to exit (EOF
  // sent) cannot take tasks again: it goes too. keep_child_count() then starts
  // new children of the running config for every one that went.
  const uint64_t refused = generation_;
  generation_++;
  for (auto& s : children_) {
    if (s.generation == refused || s.input_ended) {
      s.retiring = true;
    } else {
      s.generation = generation_;
      s.retiring = false;
    }
  }
  std::string text;
  for (const auto& [k, v] : copy) text += (text.empty() ? "" : "; ") + k + ": " + v;
  log_.error("reload abandoned: " + why + "; the running children and configuration stay", {{"detail", text}});
  metrics_.reload("abandoned");
  notifier_.status("reload abandoned: " + why);
}

void Worker::Impl::keep_child_count(SteadyTime now) {
  if (rolling_ || draining_) return;
  const size_t target = std::max<uint32_t>(1, settings_.processes);
  size_t active = 0;
  for (const auto& s : children_) active += s.retiring ? 0 : 1;
  for (; active < target; ++active) {
    Slot fresh;
    fresh.generation = generation_;
    fresh.respawn_at = now;
    children_.push_back(std::move(fresh));
  }
}

void Worker::Impl::remove_retired() {
  for (auto& s : children_) {
    // A replaced child with nothing left to do gets EOF: it finishes and exits.
    if (s.retiring && s.proc && s.ready && s.pipeline.empty() && !s.input_ended) {
      s.input_ended = true;
      write_child(s);
      s.proc->end_input();
    }
    // One still starting (a reload came during a roll) has taken nothing: it just goes.
    if (s.retiring && s.proc && !s.ready && !s.input_ended) {
      s.input_ended = true;
      s.proc->signal(SIGKILL);
    }
  }
  children_.erase(std::remove_if(children_.begin(), children_.end(),
                                 [](const Slot& s) { return s.retiring && !s.proc; }),
                  children_.end());
}

// ----------------------------------------------------------------- children

void Worker::Impl::spawn_due_children(SteadyTime now) {
  if (draining_) return;
  sigset_t empty;
  sigemptyset(&empty);
  for (auto& s : children_) {
    if (s.proc || s.retiring || now < s.respawn_at) continue;
    auto child = ChildProcess::spawn(*setup_.child_program, setup_.child_args(*config_), empty, child_title_);
    if (!child.ok()) {
      log_.error("cannot start child", {{"error", child.status().message()}});
      s.respawn_at = now + std::chrono::seconds(1);
      continue;
    }
    s.proc.emplace(std::move(child).value());
    s.in.emplace(max_frame_bytes(config_->max_message_bytes));
    s.out.clear();
    s.out_pos = 0;
    write_settings_frame(s.out, config_->plugin_settings);  // the child's first frame; sent with the next writes
    s.ready = false;
    s.soft_sent = false;
    s.killed_for_timeout = false;
    s.timed_out_seq = 0;
    s.socket_closed = false;
    s.killed_for_start = false;
    s.started_at = now;
    s.generation = generation_;
    s.input_ended = false;
  }
}

size_t Worker::Impl::capacity() const {
  if (settings_.prefetch > 0) {
    return configured_prefetch(settings_.prefetch, active_children(), claimed_body_bytes_, config_->max_message_bytes);
  }
  PrefetchInputs in;
  in.processes = active_children();
  in.upper_bound = max_capacity_;
  in.delayed_lane = setup_.lane == Lane::dtask;
  in.avg_task_us = avg_task_us_;
  in.body_bytes = claimed_body_bytes_;
  in.max_message_bytes = config_->max_message_bytes;
  return automatic_prefetch(in);
}

size_t Worker::Impl::pipeline_depth() const {
  // Keep about kTargetPipelineUs of work queued inside each child: deep for
  // tiny tasks (throughput), 1 for slow ones (no task waits behind another).
  if (avg_task_us_ <= 0) return 1;
  auto depth = static_cast<size_t>(kTargetPipelineUs / std::max(1.0, avg_task_us_));
  return std::clamp<size_t>(depth, 1, kMaxPipeline);
}

void Worker::Impl::on_child_readable(Slot& s) {
  for (;;) {
    ssize_t n = s.in->read_from(s.proc->socket());
    if (n == 0 && !s.socket_closed) {
      // The child closed its end: it can never report a result again. Kill
      // it; its exit (pidfd) settles the running task as crashed.
      s.socket_closed = true;
      s.proc->signal(SIGKILL);
    }
    if (n <= 0) break;
    while (auto f = s.in->next()) handle_frame(s, *f);
    if (s.in->oversized()) {
      log_.error("child sent an oversized frame; killing it", {{"pid", std::to_string(s.proc->pid())}});
      s.proc->signal(SIGKILL);
      break;
    }
    if (!s.proc) break;
    // A short read emptied the socket: the next poll says when more comes,
    // which spares a read that would only say EAGAIN.
    if (static_cast<size_t>(n) < FrameBuffer::kReadChunk) break;
  }
}

void Worker::Impl::handle_frame(Slot& s, const FrameBuffer::Frame& f) {
  if (f.type == FrameType::ready) {
    ReadyReport report;
    read_ready_payload(f.payload, &report);  // a malformed tail only shortens the lists logged
    const std::vector<std::string> unhandled = unhandled_registrations(*config_, setup_.topic, report.tasks);
    if (!unhandled.empty()) {
      // Taking tasks it cannot run would dead-letter its topic's work: refuse.
      const std::string what = boost::algorithm::join(unhandled, "; ");
      const std::string refused = report.errors.empty() ? "" : " (plugins refused: " +
                                                                    boost::algorithm::join(report.errors, "; ") + ")";
      if (rolling_ && s.generation == generation_) {
        s.proc->signal(SIGKILL);
        abort_roll("the new configuration's children cannot run tasks registered for this topic",
                   {{"unhandled", what}, {"refused", boost::algorithm::join(report.errors, "; ")}});
        return;
      }
      if (!announced_ready_) {
        setup_failure_ = Status::not_found(what + ", but no plugin in " + config_->plugins_dir + " handles it" +
                                           refused + "; no task of topic " + setup_.topic +
                                           " was taken (--check-config reports the same)");
      } else if (unhandled != last_unhandled_) {
        log_.error("a new child cannot run tasks registered for this topic; it is stopped and started again later, "
                   "the other children go on",
                   {{"unhandled", what}, {"refused", boost::algorithm::join(report.errors, "; ")}});
      }
      last_unhandled_ = unhandled;
      s.proc->signal(SIGKILL);  // reaped as a child that died before it was ready: backed off
      return;
    }
    last_unhandled_.clear();
    s.ready = true;
    s.startup_failures = 0;
    if (!announced_ready_ || report.errors != last_load_errors_) {
      last_load_errors_ = report.errors;
      for (const auto& error : report.errors) log_.error("plugin refused", {{"error", error}});
      const std::string tasks = boost::algorithm::join(report.tasks, ",");
      log_.info("plugins loaded", {{"dir", config_->plugins_dir}, {"tasks", tasks.empty() ? "(none)" : tasks}});
      for (const auto& name : unused_plugin_settings(config_->plugin_settings, report.plugins)) {
        log_.warn("plugin settings unused: no plugin of that name was loaded",
                  {{"settings", "plugins.settings." + name},
                   {"plugins", boost::algorithm::join(report.plugins, ",")}});
      }
    }
    if (!announced_ready_) {
      announced_ready_ = true;
      notifier_.ready(std::string(lane_name(setup_.lane)) + " worker for topic " + setup_.topic + " running");
      const std::string prefetch = settings_.prefetch > 0 ? std::to_string(settings_.prefetch)
                                                          : "auto (up to " + std::to_string(max_capacity_) + ")";
      log_.info("ready", {{"processes", std::to_string(active_children())},
                          {"prefetch", prefetch},
                          {"route_events", routes_ ? "yes" : "no"}});
    }
    return;
  }
  if (f.type != FrameType::result || s.pipeline.empty()) return;
  FieldReader r(f.payload);
  const uint64_t seq = r.u64();
  AttemptFacts facts;
  facts.outcome = static_cast<Outcome>(r.u8());
  const bool has_after = r.u8() != 0;
  const int64_t after = r.i64();
  const bool has_limit = r.u8() != 0;
  const uint32_t limit = r.u32();
  const WallMs started = r.i64();
  const WallMs finished = r.i64();
  const int64_t duration_us = r.i64();
  facts.message = std::string(r.str());
  const bool known_outcome = facts.outcome == Outcome::ok || facts.outcome == Outcome::retry ||
                             facts.outcome == Outcome::fail || facts.outcome == Outcome::no_handler;
  if (r.failed() || !known_outcome || seq != s.pipeline.front().seq) {
    log_.error("child sent a malformed or out-of-order result; killing it",
               {{"pid", std::to_string(s.proc->pid())}});
    s.proc->signal(SIGKILL);
    return;
  }
  if (has_after) facts.retry_after_ms = after;
  if (has_limit) facts.retry_limit = limit;
  facts.finished_at = finished;
  Running done = std::move(s.pipeline.front());
  s.pipeline.pop_front();
  s.head_since = clock_.steady_now();
  s.soft_sent = false;
  const double measured = static_cast<double>(std::max<int64_t>(duration_us, 1));
  avg_task_us_ = avg_task_us_ <= 0 ? measured : 0.9 * avg_task_us_ + 0.1 * measured;
  if (interrupting_ && facts.outcome != Outcome::ok) {
    // Asked to stop by the shutdown (drain_timeout passed), the handler gave
    // up: the task goes back due now, without costing an attempt, as if the
    // child had been killed.
    release(done.job, "interrupted by shutdown", s.proc->pid());
    return;
  }
  complete(done.job, facts, started, finished, duration_us / 1000, s.proc->pid());
}

void Worker::Impl::on_child_exit(Slot& s, SteadyTime now) {
  // Results written before the child died still count: read them first.
  on_child_readable(s);
  std::string how;
  if (!s.proc->try_reap(&how)) return;  // pidfd readable but not yet reapable: next round
  const int64_t pid = s.proc->pid();
  const bool was_ready = s.ready;
  // A child killed for the timeout of a task whose result came in the
  // meantime died under the task after it, which had no fair run: that one
  // goes back with those queued behind it, not counted.
  const bool killed_for_an_earlier_task =
      s.killed_for_timeout && !s.pipeline.empty() && s.pipeline.front().seq != s.timed_out_seq;
  if (!s.pipeline.empty() && !killed_for_an_earlier_task) {
    Running head = std::move(s.pipeline.front());
    s.pipeline.pop_front();
    const WallMs wall = clock_.wall_now();
    if (interrupting_) {
      release(head.job, "interrupted by shutdown", pid);
    } else {
      AttemptFacts facts;
      const int64_t timeout = head.job.env.timeout_ms > 0 ? head.job.env.timeout_ms : settings_.timeout_ms;
      if (s.killed_for_timeout) {
        facts.outcome = Outcome::timed_out;
        facts.message = "timed out after " + std::to_string(timeout) + "ms; killed";
      } else {
        facts.outcome = Outcome::crashed;
        facts.message = "worker child " + how + " while running the task";
        log_.warn("task's child died while running it", {{"task", head.job.env.task}, {"id", head.job.env.id},
                                                          {"topic", head.job.env.topic}, {"how", how}});
      }
      facts.finished_at = wall;
      const int64_t ran_ms = duration_cast<milliseconds>(now - s.head_since).count();
      complete(head.job, facts, wall - ran_ms, wall, ran_ms, pid);
    }
  }
  // Tasks queued behind the crashed one never started: back to the queue.
  while (!s.pipeline.empty()) {
    Running r = std::move(s.pipeline.back());
    s.pipeline.pop_back();
    if (draining_) {
      release(r.job, "released by shutdown", 0);  // never started: no result record
    } else {
      queue_.push_front(std::move(r.job));
    }
  }
  if (s.retiring) {
    log_.info("replaced child exited", {{"pid", std::to_string(pid)}, {"how", how}});
  } else if (!draining_) {
    log_.warn("child exited", {{"pid", std::to_string(pid)}, {"how", how}});
  }
  if (!s.retiring && !draining_) {
    metrics_.child_restart(s.killed_for_timeout ? "task_timeout"
                           : s.killed_for_start ? "start_timeout"
                           : was_ready          ? "died"
                                                : "died_starting");
  }
  s.proc.reset();
  s.in.reset();
  s.ready = false;
  if (s.retiring) return;  // removed from children_ at the top of the loop
  if (rolling_ && !was_ready && s.generation == generation_) {
    s.respawn_at = now;
    abort_roll("a child of the new configuration died before it was ready", {{"how", how}});
    return;
  }
  if (was_ready) {
    s.respawn_at = now;
  } else {
    // Dying before READY (a plugin crashing in init): back off, 1s .. 30s.
    s.startup_failures++;
    auto delay = std::chrono::seconds(std::min<uint32_t>(30, 1u << std::min<uint32_t>(s.startup_failures - 1, 5)));
    s.respawn_at = now + delay;
    log_.error("child died before it was ready; restarting later",
               {{"how", how}, {"retry_in", std::to_string(delay.count()) + "s"}});
    notifier_.status("children fail to start: " + how);
  }
}

void Worker::Impl::write_child(Slot& s) {
  while (s.proc && s.out_pos < s.out.size()) {
    // MSG_NOSIGNAL: a child that just died must cost an EPIPE here, not a SIGPIPE that kills the parent.
    ssize_t n = ::send(s.proc->socket(), s.out.data() + s.out_pos, s.out.size() - s.out_pos, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) s.proc->signal(SIGKILL);  // broken pipe: its exit is handled via the pidfd
      return;
    }
    s.out_pos += static_cast<size_t>(n);
  }
  if (s.out_pos == s.out.size()) {
    s.out.clear();
    s.out_pos = 0;
  }
}

void Worker::Impl::check_timeouts(SteadyTime now) {
  // A child that does not become ready (a plugin's init that hangs) is killed:
  // its exit backs off and retries as a crash in init does.
  for (auto& s : children_) {
    if (!s.proc || s.ready || s.killed_for_start || now - s.started_at < milliseconds(settings_.start_timeout_ms)) {
      continue;
    }
    s.killed_for_start = true;
    log_.error("child not ready in time: a plugin's init hangs?; killing it",
               {{"pid", std::to_string(s.proc->pid())},
                {"start_timeout", format_duration(milliseconds(settings_.start_timeout_ms))},
                {"setting", "workers." + setup_.topic + ".start_timeout"}});
    s.proc->signal(SIGKILL);
  }
  for (auto& s : children_) {
    if (!s.proc || s.pipeline.empty()) continue;
    const auto& env = s.pipeline.front().job.env;
    const milliseconds timeout(env.timeout_ms > 0 ? env.timeout_ms : settings_.timeout_ms);
    const auto elapsed = now - s.head_since;
    if (elapsed >= timeout && !s.soft_sent) {
      s.soft_sent = true;
      s.proc->stop_task(s.pipeline.front().seq);  // should_stop() turns 1 in that task only
    }
    if (elapsed >= timeout + milliseconds(settings_.kill_after_ms) && !s.killed_for_timeout) {
      s.killed_for_timeout = true;
      s.timed_out_seq = s.pipeline.front().seq;
      log_.warn("task timed out; killing its child",
                {{"task", env.task}, {"id", env.id}, {"topic", env.topic}, {"pid", std::to_string(s.proc->pid())}});
      s.proc->signal(SIGKILL);
    }
  }
}

// -------------------------------------------------------------------- tasks

size_t Worker::Impl::held() const {
  size_t n = queue_.size();
  for (const auto& s : children_) n += s.pipeline.size();
  return n;
}

bool Worker::Impl::child_with_room() const {
  const size_t depth = pipeline_depth();
  return std::any_of(children_.begin(), children_.end(),
                     [&](const Slot& s) { return s.proc && s.ready && !s.retiring && s.pipeline.size() < depth; });
}

size_t Worker::Impl::ready_children() const {
  size_t n = 0;
  for (const auto& s : children_) n += (s.proc && s.ready && !s.retiring) ? 1 : 0;
  return n;
}

bool Worker::Impl::may_claim() const {
  return !draining_ && ready_children() > 0 && flush_backoff_.count() == 0 && results_backlog_.empty() &&
         queue_.size() <= capacity() / 2 && held() < capacity();
}

uint32_t Worker::Impl::claim_room() const {
  return may_claim() ? static_cast<uint32_t>(std::min<size_t>(capacity() - held(), config_->sqlite.claim_batch)) : 0;
}

void Worker::Impl::claim(SteadyTime now) {
  if (routed_ahead_) {  // a routed look waits for room, or for a route-only look's time
    commit_look(now, now >= route_only_at());
    return;
  }
  if (claims_in_flight_ > 0) return;
  const bool claiming = now >= next_claim_at_ && may_claim();
  const bool routing_only = !claiming && now >= route_only_at();
  if (!claiming && !routing_only) return;
  const uint32_t want = claiming ? claim_room() : 0;
  if (routes_) {
    read_events(want);
    return;
  }
  ++claims_in_flight_;
  last_claim_posted_at_ = now;
  broker_thread_->post([this, want, lane = setup_.lane, topic = setup_.topic,
                        lookahead = lookahead_.count()](Broker& broker) -> BrokerThread::Completion {
    auto claimed = std::make_shared<Claimed>();
    claimed->want = want;
    claimed->got = broker.claim_ahead(lane, topic, want, lookahead);
    // The dtask lane sleeps until the next task comes due: learn when, in the same trip.
    if (lane == Lane::dtask && claimed->got.ok() && claimed->got->size() < want) {
      claimed->next_due = broker.next_due(lane, topic);
    }
    return [this, claimed] { on_claimed(*claimed); };
  });
}

void Worker::Impl::read_events(uint32_t room) {
  // No more events than it can claim tasks for: the rest of a look's tasks
  // would be inserted ready, and claimed later by a second write.
  const uint32_t max_events = room > 0 ? std::min(kEventBatch, std::max(room, kMinEventsPerLook)) : kEventBatch;
  ++claims_in_flight_;
  broker_thread_->post([this, max_events](Broker& broker) -> BrokerThread::Completion {
    auto read = std::make_shared<Result<std::vector<Delivery>>>(broker.read_events(max_events));
    return [this, max_events, read] { route_read(max_events, std::move(*read)); };
  });
}

void Worker::Impl::route_read(uint32_t asked, Result<std::vector<Delivery>> read) {
  if (!read.ok()) {
    Claimed failed;
    failed.routed = true;
    failed.got = read.status().with_context("reading events to route");
    on_claimed(failed);  // counts the read back
    return;
  }
  --claims_in_flight_;  // the read is back; commit_look() posts its commit
  // Routed here, on the loop's thread, while the broker thread commits.
  auto look = std::make_shared<RoutedLook>();
  look->read = std::move(read).value();
  look->full = look->read.size() >= asked;
  if (!look->read.empty() && !draining_) {  // stopping: what was read stays ready
    look->batch = route_events(look->read, *config_, clock_.wall_now(), &look->summary);
  }
  routed_ahead_ = std::move(look);
  commit_look(clock_.steady_now(), false);
}

void Worker::Impl::commit_look(SteadyTime now, bool route_only) {
  if (!routed_ahead_) return;
  // Committed once this topic has room for its tasks (they go in leased);
  // while it has none, held, but not longer than a route-only look would
  // wait, so that other topics' tasks are not held back. Stopping: the
  // events are handed back unrouted.
  const uint32_t room = draining_ ? 0 : claim_room();
  if (room == 0 && !draining_ && !route_only && !routed_ahead_->read.empty()) return;
  std::shared_ptr<RoutedLook> look = std::move(routed_ahead_);
  routed_ahead_.reset();
  auto claimed = std::make_shared<Claimed>();
  claimed->routed = true;
  claimed->want = room;
  claimed->summary = std::move(look->summary);
  if (draining_) {  // routed before the stop: nothing of it is committed
    look->batch = Batch();
    claimed->summary = RouteSummary();
  }
  if (room > 0) last_claim_posted_at_ = now;
  ++claims_in_flight_;
  broker_thread_->post([this, claimed, look, topic = setup_.topic](Broker& broker) -> BrokerThread::Completion {
    auto committed = broker.commit_routed(std::move(look->read), look->batch, topic, claimed->want);
    if (committed.ok()) {
      claimed->events = committed->events;
      claimed->got = std::move(committed->claimed);
    } else {
      claimed->got = committed.status().with_context("routing events");
    }
    return [this, claimed] { on_claimed(*claimed); };
  });
  // A full read: more events wait. The next read goes behind this commit on
  // the broker thread (so it finds these events gone), and its routing here
  // overlaps the commit.
  if (look->full && !draining_) read_events(claim_room());
}

void Worker::Impl::on_routed(const Claimed& claimed, SteadyTime now) {
  if (claimed.events > 0) {
    const RouteSummary& s = claimed.summary;
    routing_log_.log(s, *config_, clock_.wall_now());
    routing_metrics_.routed(s.events, s.unroutable, s.invalid, s.tasks);
  }
  // Events read: more may wait (a look stops at its batch or the read
  // budget). None: the next event's wake-up, or a slow look now and then.
  next_route_at_ = claimed.events > 0 && claimed.got.ok()
                       ? now
                       : now + (broker_.wake_fd() >= 0 ? std::max(poll_interval_, kSignalledLookEvery) : poll_interval_);
}

SteadyTime Worker::Impl::route_only_at() const {
  if (!routes_ || draining_) return SteadyTime::max();
  return std::max(next_route_at_, last_claim_posted_at_ + poll_interval_);
}

void Worker::Impl::on_claimed(Claimed& claimed) {
  --claims_in_flight_;
  const SteadyTime now = clock_.steady_now();
  if (claimed.routed) on_routed(claimed, now);
  if (!claimed.got.ok()) {
    log_.error("claim failed; retrying", {{"error", claimed.got.status().message()}});
    next_claim_at_ = now + poll_interval_;
    return;
  }
  std::vector<Delivery>& got = claimed.got.value();
  if (!got.empty()) claimed_body_bytes_ = 0;
  for (auto& d : got) {
    claimed_body_bytes_ = std::max<uint64_t>(claimed_body_bytes_, d.body.size());
    DecodeResult r;
    if (d.decoded) {
      r.envelope = std::move(*d.decoded);  // decoded by the broker already
      d.decoded.reset();
    } else {
      r = decode_envelope(d.body, config_->max_message_bytes);
    }
    if (!r.ok() || r.envelope.kind != EnvelopeKind::task) {
      dead_letter_undecodable(d, r);
      continue;
    }
    if (r.envelope.topic != setup_.topic) {
      dead_letter_delivery(d, "invalid", "the task's topic '" + r.envelope.topic + "' is not this queue's '" +
                                             setup_.topic + "' (published straight to the wrong queue?)");
      continue;
    }
    if (r.envelope.attempt >= r.envelope.max_attempts) {
      dead_letter_delivery(d, "invalid", "attempt " + std::to_string(r.envelope.attempt) +
                                             " is not below max_attempts " + std::to_string(r.envelope.max_attempts) +
                                             ": a task has no attempt left before it runs (a forged attempt count?)");
      continue;
    }
    if (d.attempt >= d.max_attempts) {
      // Its deliveries ended without a result as often as it may run: the
      // task kills (or outlives) every worker that takes it.
      dead_letter_delivery(d, "worker lost",
                           "delivered " + std::to_string(d.redeliveries) +
                               " times more without a result (the worker holding it died or lost its connection); "
                               "no attempt left of " + std::to_string(d.max_attempts));
      continue;
    }
    r.envelope.attempt = d.attempt;  // the row is authoritative (lease recovery, replay)
    r.envelope.max_attempts = d.max_attempts;
    Job job{std::move(d), std::move(r.envelope)};
    if (draining_) {
      release(job, "released by shutdown", 0);  // claimed while the stop signal came in
    } else {
      enqueue_by_due(std::move(job));
    }
  }
  if (got.size() == claimed.want) {
    claim_backoff_.after_look(true);
    next_claim_at_ = now;  // a full batch: there is probably more
    return;
  }
  // A partial batch: the producer may be committing more right now. A broker
  // that signals deliveries (wake_fd: RabbitMQ, SQLite's wake sockets) needs
  // no polling; a slow look now and then only guards against a missed signal.
  next_claim_at_ = now + (broker_.wake_fd() >= 0 ? std::max(poll_interval_, kSignalledLookEvery)
                                                 : claim_backoff_.after_look(!got.empty()));
  if (claimed.events > 0) next_claim_at_ = now;  // it routed events: more may wait
  if (claimed.next_due.ok() && claimed.next_due->has_value()) {
    // Sleep exactly until the next delayed task comes due, if that is sooner.
    const int64_t wait = **claimed.next_due - clock_.wall_now() - lookahead_.count();
    next_claim_at_ = std::min(next_claim_at_, now + milliseconds(std::max<int64_t>(wait, 0)));
  }
}

void Worker::Impl::enqueue_by_due(Job job) {
  // Claims come sorted by due time; a later claim can still hold an earlier
  // task (a retry published meanwhile), so insert in order.
  const WallMs due = job.delivery.due_at;
  if (queue_.empty() || queue_.back().delivery.due_at <= due) {
    queue_.push_back(std::move(job));
    return;
  }
  auto at = std::upper_bound(queue_.begin(), queue_.end(), due,
                             [](WallMs d, const Job& j) { return d < j.delivery.due_at; });
  queue_.insert(at, std::move(job));
}

void Worker::Impl::dispatch(SteadyTime now) {
  const size_t depth = pipeline_depth();
  const WallMs wall = clock_.wall_now();
  // Never early: a task claimed ahead waits here until its due time; and
  // none starts while results wait for the results file.
  while (results_backlog_.empty() && !queue_.empty() && queue_.front().delivery.due_at <= wall) {
    Slot* best = nullptr;
    for (auto& s : children_) {
      if (!s.proc || !s.ready || s.retiring || s.pipeline.size() >= depth) continue;
      if (!best || s.pipeline.size() < best->pipeline.size()) best = &s;
    }
    if (!best) break;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    if (!broker_.alive(job.delivery.token)) {
      // Its channel closed: RabbitMQ has handed it to another consumer.
      if (dropped_stale_++ == 0) log_.warn("dropping deliveries of a lost connection unrun; RabbitMQ hands them out again");
      continue;
    }
    const int64_t timeout = job.env.timeout_ms > 0 ? job.env.timeout_ms : settings_.timeout_ms;
    metrics_.started(job.env.topic, job.env.task);
    metrics_.dispatched(job.env.topic, static_cast<double>(wall - job.delivery.due_at) / 1000.0);
    Running r{std::move(job), next_seq_++};
    FieldWriter w(best->out, FrameType::run);
    const Envelope& e = r.job.env;
    w.u64(r.seq).str(e.id).str(e.task).str(e.topic).str(e.trace).str(e.params);
    w.u32(e.attempt).u32(e.max_attempts).i64(timeout);
    w.finish();
    if (best->pipeline.empty()) {
      best->head_since = now;
      best->soft_sent = false;
    }
    best->pipeline.push_back(std::move(r));
  }
  for (auto& s : children_) {
    if (!s.out.empty()) write_child(s);
  }
}

void Worker::Impl::complete(const Job& job, const AttemptFacts& in, WallMs started, WallMs finished, int64_t time_ms,
                            int64_t pid) {
  const Envelope& env = job.env;
  AttemptFacts facts = in;
  facts.attempt = env.attempt;
  facts.max_attempts = env.max_attempts;
  facts.task = env.task;
  facts.policy.max_retries = env.max_attempts > 0 ? env.max_attempts - 1 : 0;
  facts.policy.backoff_ms = env.has_retry ? env.backoff_ms : config_->default_retry.backoff_ms;
  facts.policy.jitter_pct = env.has_retry ? env.jitter_pct : config_->default_retry.jitter_pct;
  facts.task_id = env.id;
  const NextStep step = decide_next_step(facts);
  ++executed_;
  metrics_.finished(env.topic, env.task, result_status_name(step.status), static_cast<double>(time_ms) / 1000.0,
                    static_cast<double>(started - env.due_at) / 1000.0);
  if (step.action == NextStep::Action::dead_letter) metrics_.dead_lettered(env.topic, env.task);

  ResultRecord rec;
  rec.topic = env.topic;
  rec.task_id = env.id;
  rec.task = env.task;
  rec.params = cut_params(env.params);
  rec.params_compact = true;  // a decoded envelope's params, or the compact stand-in
  rec.time_ms = time_ms;
  rec.message = facts.message;
  rec.status = result_status_name(step.status);
  rec.attempt = env.attempt;
  rec.started_at = started;
  rec.finished_at = finished;
  rec.due_at = env.due_at;
  rec.trace = env.trace;
  rec.host = host_;
  rec.pid = pid;

  Settle settle;
  settle.kind = Settle::Kind::ack;
  settle.token = job.delivery.token;
  settle.id = job.delivery.id;
  if (step.action != NextStep::Action::ack) {
    Envelope next = env;
    HistoryEntry h;
    h.attempt = env.attempt;
    h.status = rec.status;
    h.started_at = started;
    h.finished_at = finished;
    h.message = facts.message.substr(0, kMaxHistoryMessage);
    h.host = host_;
    h.pid = pid;
    next.history.push_back(std::move(h));
    if (next.history.size() > kMaxHistory) next.history.erase(next.history.begin());
    if (step.action == NextStep::Action::retry) {
      next.attempt = step.next_attempt;
      next.max_attempts = step.next_max_attempts;
      next.due_at = step.retry_due_at;
      settle.then_publish.push_back(task_message(next, Lane::dtask));
    } else {
      DeadLetter dl;
      dl.id = env.id;
      dl.kind = "task";
      dl.topic = env.topic;
      dl.name = env.task;
      dl.reason = step.dead_reason;
      dl.error = facts.message;
      dl.attempts = env.attempt + 1;
      dl.body = encode_envelope(next);
      dl.first_seen = env.created_at;
      dl.dead_at = finished;
      settle.then_dead = std::move(dl);
      log_.warn("task dead-lettered", {{"task", env.task}, {"id", env.id}, {"topic", env.topic},
                                       {"reason", step.dead_reason}, {"error", facts.message}});
    }
  }
  if (pending_.completions == 0) pending_.oldest = clock_.steady_now();
  pending_.completions++;
  append_result_json(rec, &pending_.lines);
  pending_.lines.push_back('\n');
  pending_.batch.results.push_back(std::move(rec));
  pending_.batch.settle.push_back(std::move(settle));
}

void Worker::Impl::release(const Job& job, const std::string& why, int64_t pid) {
  ResultRecord rec;
  rec.topic = job.env.topic;
  rec.task_id = job.env.id;
  rec.task = job.env.task;
  rec.params = cut_params(job.env.params);
  rec.params_compact = true;
  rec.message = why;
  rec.status = "retry";
  rec.attempt = job.env.attempt;
  rec.started_at = rec.finished_at = clock_.wall_now();
  rec.due_at = job.env.due_at;
  rec.trace = job.env.trace;
  rec.host = host_;
  rec.pid = pid;
  if (pending_.completions == 0) pending_.oldest = clock_.steady_now();
  pending_.completions++;
  if (pid != 0) {  // a task that never started leaves no result record
    append_result_json(rec, &pending_.lines);
    pending_.lines.push_back('\n');
    pending_.batch.results.push_back(std::move(rec));
  }
  Settle s;
  s.kind = Settle::Kind::release;
  s.token = job.delivery.token;
  s.id = job.delivery.id;
  pending_.batch.settle.push_back(std::move(s));
}

void Worker::Impl::dead_letter_undecodable(const Delivery& d, const DecodeResult& r) {
  dead_letter_delivery(d, r.ok() ? "invalid" : decode_error_reason(r.error),
                       r.ok() ? "the message is an event, not a task" : r.detail);
}

void Worker::Impl::dead_letter_delivery(const Delivery& d, const std::string& reason, const std::string& error) {
  DeadLetter dl;
  dl.id = d.id;
  dl.kind = "task";
  dl.topic = d.topic;
  dl.name = d.name;
  dl.reason = reason;
  dl.error = error;
  dl.attempts = d.attempt;
  dl.body = d.body;
  dl.first_seen = d.created_at;
  dl.dead_at = clock_.wall_now();
  metrics_.dead_lettered_unrun(d.topic, reason);
  log_.error("task dead-lettered unrun",
             {{"task", d.name}, {"id", d.id}, {"topic", d.topic}, {"reason", dl.reason}, {"error", dl.error}});
  Settle s;
  s.token = d.token;
  s.id = d.id;
  s.then_dead = std::move(dl);
  if (pending_.completions == 0) pending_.oldest = clock_.steady_now();
  pending_.completions++;
  pending_.batch.settle.push_back(std::move(s));
}

// ------------------------------------------------------------------- broker

SteadyTime Worker::Impl::flush_due_at() const {
  if (pending_.completions >= flush_completions_) return pending_.oldest;
  const bool running = std::any_of(children_.begin(), children_.end(),
                                   [](const Slot& s) { return !s.pipeline.empty(); });
  const bool due_waiting = !queue_.empty() && queue_.front().delivery.due_at <= clock_.wall_now();
  if (!running && !due_waiting) return pending_.oldest;  // idle: commit now
  return pending_.oldest + kFlushAge;
}

void Worker::Impl::flush(SteadyTime now, bool force) {
  // One commit at a time: what completes meanwhile joins the next, bigger one.
  if (pending_.completions == 0 || commit_in_flight_) return;
  if (!force && (now < flush_due_at() || now < next_flush_try_)) return;
  // The results file first, then the commit: the record of an execution
  // exists before the task leaves the queue. A file that cannot be written
  // holds up no commit (the results table, or RabbitMQ's results exchange,
  // gets every record): its lines wait, and the worker takes no new task
  // until they are written.
  if (!pending_.lines.empty() && results_) {
    const size_t records = static_cast<size_t>(std::count(pending_.lines.begin(), pending_.lines.end(), '\n'));
    if (!results_backlog_.empty()) {
      results_backlog_ += pending_.lines;
      results_backlog_records_ += records;
    } else if (Status s = results_->append(pending_.lines); !s.ok()) {
      results_backlog_ = pending_.lines;
      results_backlog_records_ = records;
      results_backoff_ = kResultsRetryFirst;
      next_results_try_ = now + results_backoff_;
      log_.error("results file cannot be written; taking no new task until it can (every record is still "
                 "committed to the broker, and written to the file once it can be)",
                 {{"error", s.message()}});
    }
  }
  // The same lines, for a broker that publishes them, moved rather than
  // copied: a batch of 1,000 holds some 300 KB of them (clear() swaps back).
  if (pending_.batch.results_jsonl.empty()) {
    pending_.batch.results_jsonl.swap(pending_.lines);
  } else {
    pending_.batch.results_jsonl += pending_.lines;  // a failed commit's batch, going again with more
  }
  pending_.lines.clear();
  auto sent = std::make_shared<Pending>(std::move(pending_));
  pending_ = std::move(spare_);  // the buffers of the batch committed before
  pending_.clear();
  committing_tokens_.clear();
  for (const Settle& st : sent->batch.settle) committing_tokens_.push_back(st.token);
  commit_in_flight_ = true;
  commit_posted_at_ = clock_.steady_now();
  broker_thread_->post([this, sent](Broker& broker) -> BrokerThread::Completion {
    auto report = std::make_shared<Result<CommitReport>>(broker.commit(sent->batch));
    return [this, sent, report] { on_committed(*sent, *report); };
  });
}

void Worker::Impl::write_results_backlog(SteadyTime now, bool last_try) {
  if (results_backlog_.empty() || !results_ || (!last_try && now < next_results_try_)) return;
  Status s = results_->reopen();  // the path may name a new file by now
  if (s.ok()) s = results_->append(results_backlog_);
  if (!s.ok()) {
    results_backoff_ = std::min(kResultsRetryMax, results_backoff_ * 2);
    next_results_try_ = now + results_backoff_;
    if (last_try) {
      log_.error("results file still cannot be written; these records are only in the broker's results (SQLite: "
                 "the results table)",
                 {{"records", std::to_string(results_backlog_records_)}, {"error", s.message()}});
    }
    return;
  }
  log_.info("results file written again; taking tasks again",
            {{"records_written_late", std::to_string(results_backlog_records_)}});
  results_backlog_.clear();
  results_backlog_records_ = 0;
}

void Worker::Impl::on_committed(Pending& sent, const Result<CommitReport>& report) {
  commit_in_flight_ = false;
  committing_tokens_.clear();
  metrics_.commit(duration_cast<std::chrono::duration<double>>(clock_.steady_now() - commit_posted_at_).count(),
                  report.ok());
  if (!report.ok()) {
    const SteadyTime now = clock_.steady_now();
    flush_backoff_ = std::min(milliseconds(5000), std::max(milliseconds(50), flush_backoff_ * 2));
    next_flush_try_ = now + flush_backoff_;
    log_.error("commit failed; keeping the results and retrying",
               {{"error", report.status().message()}, {"retry_in", std::to_string(flush_backoff_.count()) + "ms"}});
    // The batch goes first again; what completed meanwhile rides behind it.
    Batch& older = sent.batch;
    Batch& newer = pending_.batch;
    auto append = [](auto& to, auto& from) { std::move(from.begin(), from.end(), std::back_inserter(to)); };
    append(older.settle, newer.settle);
    append(older.publish, newer.publish);
    append(older.dead, newer.dead);
    append(older.results, newer.results);
    older.results_jsonl += newer.results_jsonl;
    sent.completions += pending_.completions;
    sent.lines = std::move(pending_.lines);
    pending_ = std::move(sent);
    return;
  }
  if (report->stale > 0) {
    log_.warn("tasks no longer held at their commit (a lease expired, the broker connection closed, or an earlier try "
              "settled them); what rode on them was not published again",
              {{"count", std::to_string(report->stale)}});
  }
  flush_backoff_ = milliseconds(0);
  sent.clear();
  spare_ = std::move(sent);
}

void Worker::Impl::finish_commits() {
  // Commit what is left (a claim still in flight releases its tasks into
  // pending_ first); keep trying for a while rather than lose results, but
  // not past kFinishCommitsFor in all: with the broker unreachable, each try
  // can take RabbitMQ's confirm_timeout, and the tasks come back anyway.
  const SteadyTime give_up = clock_.steady_now() + kFinishCommitsFor;
  for (int failures = 0; failures < 50 && clock_.steady_now() < give_up;) {
    while (broker_thread_->in_flight() > 0) {
      broker_thread_->wait(milliseconds(1000));
      broker_thread_->run_completions();
    }
    if (pending_.completions == 0) return;
    if (flush_backoff_.count() > 0) {
      ++failures;
      ::usleep(100'000);
    }
    flush(clock_.steady_now(), true);
  }
}

std::vector<uint64_t> Worker::Impl::held_tokens() const {
  std::vector<uint64_t> tokens;
  for (const auto& j : queue_) tokens.push_back(j.delivery.token);
  for (const auto& s : children_) {
    for (const auto& r : s.pipeline) tokens.push_back(r.job.delivery.token);
  }
  for (const auto& st : pending_.batch.settle) tokens.push_back(st.token);
  tokens.insert(tokens.end(), committing_tokens_.begin(), committing_tokens_.end());
  return tokens;
}

void Worker::Impl::extend_leases() {
  if (extend_in_flight_) return;
  auto tokens = held_tokens();
  if (tokens.empty()) return;
  extend_in_flight_ = true;
  broker_thread_->post([this, tokens = std::move(tokens)](Broker& broker) -> BrokerThread::Completion {
    Status s = broker.extend(tokens);
    return [this, s] {
      extend_in_flight_ = false;
      if (!s.ok()) log_.error("lease extension failed", {{"error", s.message()}});
    };
  });
}

void Worker::Impl::recover_expired() {
  if (recover_in_flight_) return;
  recover_in_flight_ = true;
  broker_thread_->post([this, lane = setup_.lane, topic = setup_.topic](Broker& broker) -> BrokerThread::Completion {
    auto n = std::make_shared<Result<uint32_t>>(broker.recover_expired(lane, topic));
    return [this, n] {
      recover_in_flight_ = false;
      if (!n->ok()) {
        log_.error("lease recovery failed", {{"error", n->status().message()}});
      } else if (**n > 0) {
        log_.warn("recovered tasks with expired leases", {{"count", std::to_string(**n)}});
      }
    };
  });
}

// ---------------------------------------------------------------- lifecycle

void Worker::Impl::begin_drain(SteadyTime now) {
  if (draining_) {
    drain_deadline_ = now;  // a second signal: stop waiting for running tasks
    return;
  }
  draining_ = true;
  drain_deadline_ = now + milliseconds(settings_.drain_timeout_ms);
  notifier_.stopping();
  log_.info("stopping: finishing running tasks", {{"running", std::to_string(held() - queue_.size())},
                                                  {"released", std::to_string(queue_.size())}});
  for (const auto& job : queue_) release(job, "released by shutdown", 0);
  queue_.clear();
}

bool Worker::Impl::drained() const {
  return std::all_of(children_.begin(), children_.end(), [](const Slot& s) { return s.pipeline.empty(); });
}

Status Worker::Impl::run(SignalFd& signals) {
  if (!setup_.child_program || !setup_.child_args) return Status::internal("a worker needs a child program and its options");
  fingerprint_ = reload_fingerprint(*config_);
  auto results = ResultsFile::open(config_->results_file);
  if (!results.ok()) return results.status();
  results_.emplace(std::move(results).value());

  // The children start (exec, plugins) while the broker declares and subscribes.
  spawn_due_children(clock_.steady_now());
  for (auto& s : children_) write_child(s);

  auto recovered = broker_.recover_previous_incarnation(setup_.lane, setup_.topic);
  if (!recovered.ok()) return recovered.status().with_context("recovering leases of a previous run");
  if (*recovered > 0) log_.info("recovered tasks of a previous run", {{"count", std::to_string(*recovered)}});
  // RabbitMQ consumes with a fixed prefetch (basic.qos): the one set, or the
  // automatic one's upper bound. Changing it means a new consumer, and a
  // quorum queue hands what was on its way to the old one back with a
  // delivery counted, which ebats counts as an attempt: so it never changes.
  // The automatic prefetch still decides how much the worker takes in.
  const uint32_t consumer_prefetch = settings_.prefetch > 0 ? settings_.prefetch : max_capacity_;
  Status subscribed = broker_.subscribe(setup_.lane, setup_.topic, consumer_prefetch);
  if (!subscribed.ok()) return subscribed.with_context("subscribing to the topic's queue");
  if (routes_) {
    // Woken by published events as the scheduler is (the config loader
    // refused route_events on RabbitMQ, where the scheduler routes).
    subscribed = broker_.subscribe(Lane::events, "", 2 * kEventBatch);
    if (!subscribed.ok()) return subscribed.with_context("subscribing to the events queue (route_events)");
  }
  // Finished tasks hold RabbitMQ's window until their commit: committing once
  // half of it has finished lets the broker refill that half while the other
  // runs, instead of the worker running dry between commits (bench/notes.md).
  flush_completions_ = broker_.prefetch_counts_unsettled() ? std::max<size_t>(1, consumer_prefetch / 2)
                                                           : kFlushCompletions;
  auto thread = BrokerThread::start(broker_);
  if (!thread.ok()) return thread.status();
  broker_thread_ = std::move(thread).value();

  SteadyTime now = clock_.steady_now();
  next_extend_ = now + lease_ / 3;
  next_recover_ = now + lease_ / 2;
  next_watchdog_ = now;
  if (!config_->sqlite_path().empty()) {
    auto identity = FileIdentity::of(config_->sqlite_path());
    if (identity.ok()) database_.emplace(std::move(identity).value());
  }
  std::vector<pollfd> fds;
  std::vector<Slot*> owners;  // owners[i] for fds[i]; nullptr for the signal, broker thread and delivery fds

  for (;;) {
    if (!setup_failure_.ok()) return setup_failure_;  // the children are killed as the worker is destroyed
    now = clock_.steady_now();
    remove_retired();
    if (rolling_) roll(now);
    keep_child_count(now);
    spawn_due_children(now);
    claim(now);
    write_results_backlog(now, false);
    dispatch(now);
    flush(now, false);
    update_child_gauges();
    if (draining_ && drained() && !interrupting_) break;
    if (draining_ && !interrupting_ && now >= drain_deadline_) {
      interrupting_ = true;
      kill_deadline_ = now + milliseconds(settings_.kill_after_ms);
      for (auto& s : children_) {
        if (s.proc && !s.pipeline.empty()) s.proc->stop_task(s.pipeline.front().seq);
      }
    }
    if (interrupting_ && now >= kill_deadline_) {
      for (auto& s : children_) {
        if (s.proc && !s.pipeline.empty()) s.proc->signal(SIGKILL);
      }
    }
    if (interrupting_ && drained()) break;

    // Sleep until the earliest thing we have to do.
    SteadyTime wake = now + std::chrono::seconds(1);
    // Only when a claim could happen: with the queue full, waking for it would spin.
    if (may_claim() && claims_in_flight_ == 0) wake = std::min(wake, next_claim_at_);
    if (claims_in_flight_ == 0) wake = std::min(wake, route_only_at());
    if (pending_.completions > 0 && !commit_in_flight_) {
      wake = std::min(wake, std::max(flush_due_at(), next_flush_try_));
    }
    wake = std::min({wake, next_extend_, next_recover_});
    if (!results_backlog_.empty()) wake = std::min(wake, next_results_try_);
    for (const auto& s : children_) {
      if (!s.proc && !draining_) wake = std::min(wake, s.respawn_at);
      if (s.proc && !s.ready && !s.killed_for_start) {
        wake = std::min(wake, s.started_at + milliseconds(settings_.start_timeout_ms));
      }
      if (s.proc && !s.pipeline.empty()) {
        const auto& env = s.pipeline.front().job.env;
        const milliseconds t(env.timeout_ms > 0 ? env.timeout_ms : settings_.timeout_ms);
        wake = std::min(wake, s.head_since + (s.soft_sent ? t + milliseconds(settings_.kill_after_ms) : t));
      }
    }
    if (draining_) wake = std::min(wake, interrupting_ ? kill_deadline_ : drain_deadline_);
    // Wake for the next due task only if a child could take it now; with every
    // pipeline full, a child's result wakes the loop (waking for a task that is
    // already due would spin).
    if (!queue_.empty() && child_with_room()) {
      const int64_t until_due_us = queue_.front().delivery.due_at * 1000 - clock_.wall_now_us();
      wake = std::min(wake, now + microseconds(std::max<int64_t>(until_due_us, 0)));
    }
    if (notifier_.watchdog_interval().count() > 0) wake = std::min(wake, next_watchdog_);

    fds.clear();
    owners.clear();
    fds.push_back({signals.fd(), POLLIN, 0});
    owners.push_back(nullptr);
    fds.push_back({broker_thread_->wake_fd(), POLLIN, 0});
    owners.push_back(nullptr);
    // Deliveries waiting in the broker (RabbitMQ): a claim now, rather than
    // at the next poll; only while a claim could take them.
    // A worker that routes events watches until it stops: SQLite's wake
    // socket is read at every look, so it cannot keep the loop spinning.
    const bool watch_deliveries =
        broker_.wake_fd() >= 0 && (may_claim() || (routes_ && !draining_)) && claims_in_flight_ == 0;
    fds.push_back({watch_deliveries ? broker_.wake_fd() : -1, POLLIN, 0});
    owners.push_back(nullptr);
    for (auto& s : children_) {
      if (!s.proc) continue;
      short ev = s.socket_closed ? 0 : POLLIN;
      if (!s.out.empty() && !s.socket_closed) ev |= POLLOUT;
      fds.push_back({s.proc->socket(), ev, 0});
      owners.push_back(&s);
      fds.push_back({s.proc->pidfd(), POLLIN, 0});
      owners.push_back(&s);
    }
    const timespec timeout = poll_timeout(now, wake);
    int rc = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
    if (rc < 0 && errno != EINTR) return Status::io(std::string("poll: ") + std::strerror(errno));
    now = clock_.steady_now();

    if (fds[0].revents & POLLIN) {
      for (int sig : signals.drain()) {
        if (sig == SIGHUP) {
          if (results_) {
            Status s = results_->reopen();
            log_.info("SIGHUP: results file reopened", {{"status", s.ok() ? "ok" : s.message()}});
          }
          if (!draining_) reload();
          continue;
        }
        log_.info("signal received", {{"signal", signal_name(sig)}});
        begin_drain(now);
      }
    }
    if (fds[1].revents & POLLIN) broker_thread_->run_completions();
    if (fds[2].revents & POLLIN) next_claim_at_ = next_route_at_ = now;
    for (size_t i = 3; i < fds.size(); i += 2) {
      Slot& s = *owners[i];
      if (!s.proc) continue;
      if (fds[i].revents & POLLOUT) write_child(s);
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) on_child_readable(s);
      if (fds[i + 1].revents & POLLIN) on_child_exit(s, now);
    }
    check_timeouts(now);
    if (now >= next_extend_) {
      extend_leases();
      next_extend_ = now + lease_ / 3;
    }
    if (now >= next_recover_) {
      recover_expired();
      next_recover_ = now + lease_ / 2;
    }
    if (notifier_.watchdog_interval().count() > 0 && now >= next_watchdog_) {
      notifier_.watchdog();
      next_watchdog_ = now + notifier_.watchdog_interval();
    }
    if (database_ && now >= next_database_check_) {
      Status still = database_->unchanged();
      if (!still.ok()) return still;  // the children are killed as the worker is destroyed
      next_database_check_ = now + kDatabaseCheckEvery;
    }
  }

  // Close the sockets: idle children read EOF, call their plugins' shutdown and exit.
  for (auto& s : children_) {
    if (s.proc) s.proc->close_socket();
  }
  const SteadyTime give_up = clock_.steady_now() + std::chrono::seconds(5);
  for (auto& s : children_) {
    while (s.proc && !s.proc->try_reap(nullptr) && clock_.steady_now() < give_up) ::usleep(10'000);
    s.proc.reset();  // kills a child that did not exit in time
  }
  finish_commits();
  write_results_backlog(clock_.steady_now(), true);
  broker_thread_.reset();
  log_.info("stopped", {{"executed", std::to_string(executed_)}});
  if (pending_.completions > 0) {
    return Status::io(
        "could not commit the last results; their tasks come back to the queue (SQLite: when the lease expires; "
        "RabbitMQ: now that the connection closes) and run again");
  }
  return Status();
}

Worker::Worker(WorkerSetup setup, Broker& broker, const Clock& clock, const Logger& log, const ServiceNotifier& notifier)
    : impl_(std::make_unique<Impl>(std::move(setup), broker, clock, log, notifier)) {}
Worker::~Worker() = default;
Status Worker::run(SignalFd& signals) { return impl_->run(signals); }

}  // namespace ebats
