// ebatsctl: publish events, enqueue tasks, look at queues, tasks, results,
// registrations and plugins, and handle dead letters. See docs/CLI.md. The
// help is printed from kCommands, which tests/integration/test_ctl.cpp holds
// against docs/CLI.md. Exit codes: 0 ok, 1 operational error, 2 usage or
// config error, 3 not found, 128+N publish --jsonl stopped by signal N.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <tuple>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/signal_fd.h"
#include "ebats/broker.h"
#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "ebats/publisher.h"
#include "envelope/json_io.h"
#include "envelope/uuid_v5.h"
#include "ctl.h"

namespace po = boost::program_options;

namespace {

using namespace ebatsctl;

constexpr size_t kJsonlBatch = 1000;

// One line of the help per command: its usage (docs/CLI.md shows each as
// "ebatsctl [--config FILE] <usage>", test_ctl.cpp checks both ways) and what it does.
struct CommandHelp {
  const char* usage;
  const char* what;
};
const CommandHelp kCommands[] = {
    {"publish EVENT [JSON] [--id UUID] [--trace T]", "publish one event (JSON from stdin when omitted)"},
    {"publish EVENT --jsonl [--id-from FIELD | --id-base UUID] [--trace T]",
     "publish one EVENT per line of stdin, in batches"},
    {"enqueue TOPIC TASK [JSON] [--delay D] [--trace T]",
     "create one task directly (Task::create); warns when no plugin handles TASK"},
    {"enqueue TOPIC TASK --jsonl [--delay D] [--trace T]",
     "create one TASK per line of stdin (its params), in batches, as publish --jsonl does"},
    {"stats [--json]", "pending, delayed, leased, done, dead per topic"},
    {"setup", "create the broker (SQLite: the database file) and the queues of every topic of the config"},
    {"task show ID [--json]", "every attempt of a task: status, result or error, when and where it ran; its dead letter"},
    {"results tail [--lines N] [--follow] [--json]", "the newest results (10 unless --lines says), then new ones as they come"},
    {"events [--json]", "the registrations of the config and whether a plugin handles each task"},
    {"plugins [--json]", "the plugins a worker loads (name, version, ABI, file), their tasks, the files refused"},
    {"dead list [FILTERS] [--limit N] [--json]", "list dead letters, newest first"},
    {"dead show ID [--json]", "one dead letter with its body and history"},
    {"dead replay ID... [--json]", "put these dead letters back on their queues"},
    {"dead replay --all | FILTERS [--dry-run] [--json]", "put every dead letter, or those FILTERS pick, back"},
    {"dead purge [FILTERS] [--dry-run] [--json]", "delete every dead letter, or those FILTERS pick"},
};

void print_help() {
  std::cout << "Usage: ebatsctl [--config FILE] COMMAND [ARGS]\n\nCommands:\n";
  for (const auto& c : kCommands) std::cout << "  " << c.usage << "\n      " << c.what << "\n";
  std::cout
      << "\nFILTERS (dead): --event NAME, --task NAME, --topic T, --kind event|task|raw, --reason TEXT (a part of\n"
         "  the reason), --since D (dead within D), --older-than D (dead before D ago); D as in 10s, 5m, 2h, 1d.\n"
         "\nGlobal options:\n"
         "  -c, --config FILE   config file (default: $EBATS_CONFIG)\n"
         "  -h, --help          show this help\n"
         "  -V, --version       show the version\n"
         "\n"
         "Every command but setup and publish/enqueue refuses a SQLite database that does not exist (exit 3)\n"
         "instead of creating an empty one: create it with 'ebatsctl setup'.\n"
         "\n"
         "Exit codes: 0 ok, 1 operational error, 2 usage or config error, 3 not found (a dead letter, a task,\n"
         "  the database), 128+N publish --jsonl stopped by signal N (130 SIGINT, 143 SIGTERM) after committing\n"
         "  what it read.\n";
}

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// ------------------------------------------------------------------ publish

// publish --jsonl: a batch is committed when it holds kJsonlBatch events or
// kJsonlFlushAfter after its first line was read, whichever comes first, so a
// slow producer's lines are durable within about that long.
constexpr std::chrono::milliseconds kJsonlFlushAfter{100};
// --id-from: an event's id is UUIDv5(this namespace, EVENT "\n" VALUE). It is
// UUIDv5(the ebats namespace, "ebatsctl publish --id-from"); documented in
// docs/CLI.md, so it never changes.
constexpr std::string_view kIdFromNamespace = "bb21d0c5-3d04-52b2-be16-0ab5997a6861";

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// How --jsonl gives each line's event an id.
struct JsonlIds {
  std::string from_field;  // --id-from FIELD
  std::string base;        // --id-base UUID (lowercase)
};

// The id of the event of line `line_no`, or the reason there is none. An empty
// id (no option given) lets the publisher make a new one.
ebats::Result<std::string> jsonl_event_id(const JsonlIds& ids, const std::string& event, std::string_view line,
                                          uint64_t line_no, uint64_t max_bytes) {
  if (!ids.base.empty()) return ebats::uuid_v5(ids.base, std::to_string(line_no));
  if (ids.from_field.empty()) return std::string();
  auto params = ebats::normalize_params(line, max_bytes);
  if (!params.ok()) return params.status().with_context("params of event " + event);
  rapidjson::Document doc;
  doc.Parse<ebats::json::kReadFlags>(params->c_str(), params->size());  // valid: normalize_params made it
  if (doc.HasParseError() || !doc.IsObject()) return ebats::Status::invalid("params of event " + event + ": invalid");
  const auto member = doc.FindMember(rapidjson::StringRef(ids.from_field.data(), ids.from_field.size()));
  if (member == doc.MemberEnd()) {
    return ebats::Status::invalid("params have no field '" + ids.from_field + "' (--id-from)");
  }
  // Numbers arrive as their text (kParseNumbersAsStringsFlag): 42 and "42" are one key.
  if (!member->value.IsString()) {
    return ebats::Status::invalid("field '" + ids.from_field + "' holds " +
                                  ebats::json::json_type_name(member->value.GetType()) +
                                  ", not a string or a number (--id-from)");
  }
  if (member->value.GetStringLength() == 0) {
    return ebats::Status::invalid("field '" + ids.from_field + "' is an empty string (--id-from)");
  }
  std::string name = event;
  name.append(1, '\n').append(member->value.GetString(), member->value.GetStringLength());
  return ebats::uuid_v5(kIdFromNamespace, name);
}

// "1499 events published (lines 1-1499)"; `noun` is "event" or "task".
std::string published_text(uint64_t events, uint64_t through_line, const std::string& noun) {
  std::string s = std::to_string(events) + " " + noun + (events == 1 ? "" : "s") + " published";
  if (through_line > 0) {
    s += through_line == 1 ? " (line 1)" : " (lines 1-" + std::to_string(through_line) + ")";
  }
  return s;
}

// Reads stdin line by line and publishes one event per line. Every ending
// says exactly what is stored: the count on stdout, and on stderr which line
// is the first one not published and why.
// SIGINT, SIGTERM and SIGHUP for publish --jsonl, on a signalfd polled with
// stdin, so one never interrupts a commit: it ends the wait, and what was read
// is committed and reported. A signal ignored on entry (nohup) stays ignored.
// Opened before the publisher starts a thread, so every thread blocks them.
ebats::Result<ebats::SignalFd> open_stop_signals() {
  std::vector<int> stop_signals;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    stop_signals.push_back(sig);
  }
  return ebats::SignalFd::open(stop_signals);
}

// Adds the message of one line (line number `line_no`) to the batch, or says why not.
using JsonlAdd = std::function<ebats::Result<std::string>(ebats::PublishBatch&, std::string_view, uint64_t)>;

// `noun`: "event" (publish --jsonl) or "task" (enqueue --jsonl).
int publish_jsonl(ebats::Publisher& pub, ebats::SignalFd& signals, const JsonlAdd& add, const std::string& noun,
                  bool on_rabbitmq) {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t max_bytes = pub.config().max_message_bytes;
  // A longer line cannot be params that fit (whitespace aside); stop before buffering more.
  const uint64_t max_line = 4 * max_bytes;
  auto batch = pub.batch();
  uint64_t published = 0;    // events committed
  uint64_t line_no = 0;      // lines read whole (blank ones included)
  uint64_t done_through = 0; // every line up to this one is published (or blank)
  uint64_t batch_first = 0;  // the line of the batch's first event
  std::chrono::steady_clock::time_point batch_started{};

  // Commits the batch; on failure reports it and returns the exit code.
  auto flush = [&]() -> std::optional<int> {
    const size_t n = batch.size();
    if (n > 0) {
      const ebats::Status s = batch.commit();
      if (!s.ok()) {
        std::cout << published << "\n";
        const std::string lines = batch_first == line_no ? "line " + std::to_string(line_no)
                                                         : "lines " + std::to_string(batch_first) + "-" +
                                                               std::to_string(line_no);
        std::cerr << "ebatsctl: " << published_text(published, done_through, noun) << "; " << lines
                  << " not published: " << s.message()
                  << (on_rabbitmq ? " (RabbitMQ may have taken some of them before the error)" : "")
                  << "; stopped there\n";
        return kFailure;
      }
      published += n;
    }
    done_through = line_no;
    return std::nullopt;
  };
  // Stops at line `at` (not published, for `why`) after committing the lines before it.
  auto stop_at_line = [&](uint64_t at, const std::string& why, int code) -> int {
    if (auto failed = flush()) return *failed;
    std::cout << published << "\n";
    std::cerr << "ebatsctl: " << published_text(published, done_through, noun) << "; line " << at
              << " not published: " << why << "; stopped there\n";
    return code;
  };
  // One whole line (without its newline); nullopt to go on.
  auto take_line = [&](std::string_view line) -> std::optional<int> {
    const uint64_t this_line = line_no + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) {  // blank lines are skipped
      line_no = this_line;
      if (batch.size() == 0) done_through = line_no;
      return std::nullopt;
    }
    auto r = add(batch, line, this_line);
    if (!r.ok()) return stop_at_line(this_line, r.status().message(), exit_code_of(r.status()));
    line_no = this_line;
    if (batch.size() == 1) {
      batch_first = line_no;
      batch_started = std::chrono::steady_clock::now();
    }
    if (batch.size() >= kJsonlBatch) return flush();
    return std::nullopt;
  };

  std::string buf;   // bytes read, not yet a whole line
  size_t scan = 0;   // where the search for '\n' resumes in buf
  std::vector<char> chunk(64 * 1024);
  bool eof = false;
  while (!eof) {
    int timeout_ms = -1;
    if (batch.size() > 0) {
      const auto due = batch_started + kJsonlFlushAfter;
      const auto now = std::chrono::steady_clock::now();
      if (now >= due) {
        if (auto failed = flush()) return *failed;
        continue;
      }
      timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(due - now).count());
    }
    pollfd pfd[2] = {{STDIN_FILENO, POLLIN, 0}, {signals.fd(), POLLIN, 0}};
    const int ready = ::poll(pfd, 2, timeout_ms);
    const std::vector<int> caught = ready > 0 && (pfd[1].revents & POLLIN) ? signals.drain() : std::vector<int>{};
    if (!caught.empty()) {
      if (auto failed = flush()) return *failed;
      const int sig = caught.front();
      std::cout << published << "\n";
      std::cerr << "ebatsctl: " << published_text(published, done_through, noun) << "; stopped by " << signal_name(sig)
                << ": nothing after line " << done_through << " was published\n";
      return 128 + sig;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      return stop_at_line(line_no + 1, "waiting for stdin failed: " + why, kFailure);
    }
    if (ready == 0 || !(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;  // a flush is due, or nothing to read
    const ssize_t got = ::read(STDIN_FILENO, chunk.data(), chunk.size());
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      const std::string why = std::strerror(errno);
      return stop_at_line(line_no + 1, "reading stdin failed: " + why, kFailure);
    }
    if (got == 0) {
      eof = true;
    } else {
      buf.append(chunk.data(), static_cast<size_t>(got));
    }
    size_t start = 0;
    for (size_t nl = buf.find('\n', scan); nl != std::string::npos; nl = buf.find('\n', start)) {
      if (auto code = take_line(std::string_view(buf).substr(start, nl - start))) return *code;
      start = nl + 1;
    }
    buf.erase(0, start);
    scan = buf.size();
    if (eof && !buf.empty()) {  // the last line has no newline
      if (auto code = take_line(buf)) return *code;
      buf.clear();
    }
    if (buf.size() > max_line) {
      return stop_at_line(line_no + 1,
                          "no newline within " + std::to_string(max_line) +
                              " bytes (4 times limits.max_message_bytes)",
                          kUsage);
    }
  }
  if (auto failed = flush()) return *failed;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "published " << published << " " << noun << "s from " << line_no << " lines in " << std::fixed
            << std::setprecision(3) << secs << "s ("
            << static_cast<uint64_t>(secs > 0 ? static_cast<double>(published) / secs : 0) << " " << noun << "s/s)\n";
  std::cout << published << "\n";
  return kOk;
}

int cmd_publish(const Context& ctx, const std::vector<std::string>& argv) {
  po::options_description opts("publish options");
  std::string id, trace;
  JsonlIds ids;
  bool jsonl = false;
  std::vector<std::string> pos;
  opts.add_options()("id", po::value(&id), "event id (UUID): publishing the same id twice is idempotent")(
      "trace", po::value(&trace), "correlation id")("jsonl", po::bool_switch(&jsonl), "one params object per stdin line")(
      "id-from", po::value(&ids.from_field), "--jsonl: event id from this params field")(
      "id-base", po::value(&ids.base), "--jsonl: event id from this UUID and the line number");
  if (auto err = parse_subcommand("publish", argv, opts, &pos)) return *err;
  if (pos.empty() || pos.size() > 2) return usage_error("publish takes EVENT [JSON]");
  if (!jsonl && (!ids.from_field.empty() || !ids.base.empty())) {
    return usage_error("--id-from and --id-base go with --jsonl; publish one event with --id UUID");
  }
  if (jsonl) {
    if (pos.size() == 2) return usage_error("publish --jsonl reads params from stdin; do not give JSON");
    if (!id.empty()) return usage_error("--id names one event; with --jsonl use --id-from FIELD or --id-base UUID");
    if (!ids.from_field.empty() && !ids.base.empty()) return usage_error("give --id-from or --id-base, not both");
    for (char& c : ids.base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!ids.base.empty() && !ebats::is_valid_uuid(ids.base)) {
      return usage_error("--id-base '" + ids.base + "' is not a UUID (8-4-4-4-12 hex digits)");
    }
  }
  const std::string& event = pos[0];
  {
    ebats::EventOptions given;
    given.id = id;
    given.trace = trace;
    // Before any line is read: a bad argument is a usage error, not line 1's.
    if (ebats::Status s = ebats::check_event_options(event, given); !s.ok()) return usage_error(s.message());
  }
  if (!ctx.config->registrations(event)) {
    std::cerr << "ebatsctl: warning: event '" << event << "' has no registration in " << ctx.config->path
              << "; the scheduler will dead-letter it\n";
  }
  std::optional<ebats::SignalFd> stop_signals;
  if (jsonl) {
    auto opened = open_stop_signals();
    if (!opened.ok()) return report(opened.status());
    stop_signals.emplace(std::move(opened).value());
  }
  auto pub = ebats::Publisher::open(ctx.config);
  if (!pub.ok()) return report(pub.status());
  if (jsonl) {
    const uint64_t max_bytes = ctx.config->max_message_bytes;
    ebats::EventOptions jo;
    jo.trace = trace;
    auto add = [&](ebats::PublishBatch& batch, std::string_view line, uint64_t line_no) -> ebats::Result<std::string> {
      auto line_id = jsonl_event_id(ids, event, line, line_no, max_bytes);
      if (!line_id.ok()) return line_id.status();
      jo.id = *line_id;
      return batch.add_event(event, line, jo);
    };
    return publish_jsonl(**pub, *stop_signals, add, "event", ctx.config->is_amqp());
  }
  ebats::EventOptions eo;
  eo.id = id;
  eo.trace = trace;
  const std::string json = pos.size() == 2 ? pos[1] : read_stdin();
  auto r = (*pub)->publish(event, json, eo);
  if (!r.ok()) return report(r.status());
  std::cout << *r << "\n";
  return kOk;
}

// ------------------------------------------------------------------ enqueue

// Warns when no plugin handles `task`: a worker would dead-letter it ("no
// handler for task X"). Registered tasks are checked by the workers at start;
// a task enqueued directly is not, so this loads the plugins as a worker would.
void warn_if_unhandled(const Context& ctx, const std::string& topic, const std::string& task) {
  // A task the config registers for the topic needs no probe (and its plugins' init() no extra run):
  // the topic's workers refuse to start while it has no handler.
  for (const auto& [event, regs] : ctx.config->events) {
    for (const auto& r : regs) {
      if (r.task == task && r.topic == topic) return;
    }
  }
  for (const auto& [name, source] : ctx.config->sources) {
    if (source.task == task && source.topic == topic) return;
  }
  auto probe = probe_plugins(ctx);
  if (!probe.ok()) {
    std::cerr << "ebatsctl: warning: cannot check that a plugin handles task '" << task
              << "': " << probe.status().message() << "\n";
    return;
  }
  if (std::binary_search(probe->tasks.begin(), probe->tasks.end(), task)) return;
  std::cerr << "ebatsctl: warning: no plugin in " << ctx.config->plugins_dir << " handles task '" << task
            << "'; a worker of topic " << topic << " will dead-letter it (no handler for task " << task << ")\n";
}

int cmd_enqueue(const Context& ctx, const std::vector<std::string>& argv) {
  po::options_description opts("enqueue options");
  std::string delay, trace;
  bool jsonl = false;
  std::vector<std::string> pos;
  opts.add_options()("delay", po::value(&delay), "run no earlier than this from now, e.g. 10s")(
      "trace", po::value(&trace), "correlation id")("jsonl", po::bool_switch(&jsonl), "one params object per stdin line");
  if (auto err = parse_subcommand("enqueue", argv, opts, &pos)) return *err;
  if (pos.size() < 2 || pos.size() > 3) return usage_error("enqueue takes TOPIC TASK [JSON]");
  if (jsonl && pos.size() == 3) return usage_error("enqueue --jsonl reads params from stdin; do not give JSON");
  ebats::TaskOptions to;
  to.trace = trace;
  if (!delay.empty()) {
    auto d = ebats::parse_duration(delay);
    if (!d.ok()) return usage_error("--delay: " + d.status().message());
    to.delay = *d;
  }
  // Before any line is read, and before the plugins are loaded to check the task.
  if (ebats::Status s = ebats::check_task_options(pos[0], pos[1], to); !s.ok()) return usage_error(s.message());
  warn_if_unhandled(ctx, pos[0], pos[1]);
  std::optional<ebats::SignalFd> stop_signals;
  if (jsonl) {
    auto opened = open_stop_signals();
    if (!opened.ok()) return report(opened.status());
    stop_signals.emplace(std::move(opened).value());
  }
  auto pub = ebats::Publisher::open(ctx.config);
  if (!pub.ok()) return report(pub.status());
  if (jsonl) {
    auto add = [&](ebats::PublishBatch& batch, std::string_view line, uint64_t) {
      return batch.add_task(pos[0], pos[1], line, to);
    };
    return publish_jsonl(**pub, *stop_signals, add, "task", ctx.config->is_amqp());
  }
  const std::string json = pos.size() == 3 ? pos[2] : read_stdin();
  auto r = (*pub)->enqueue_task(pos[0], pos[1], json, to);
  if (!r.ok()) return report(r.status());
  std::cout << *r << "\n";
  return kOk;
}

// -------------------------------------------------------------------- stats

// The row's name in the table: the topic, "(events)" or "(delay levels)".
std::string row_name(const ebats::QueueDepth& d) {
  switch (d.row) {
    case ebats::QueueDepth::Row::events: return "(events)";
    case ebats::QueueDepth::Row::delay_levels: return "(delay levels)";
    case ebats::QueueDepth::Row::topic: break;
  }
  return d.topic;
}

int cmd_stats(const Context& ctx, const std::vector<std::string>& argv) {
  bool json = false;
  for (const auto& a : argv) {
    if (a == "--json") {
      json = true;
    } else {
      return usage_error("stats: unknown argument '" + a + "'");
    }
  }
  auto broker = open_broker(ctx);
  if (!broker.ok()) return report(broker.status());
  auto depths = (*broker)->depths(ctx.config->topics(), ebats::DeadLetterCount::counted);
  if (!depths.ok()) return report(depths.status());
  if (json) {
    std::string out;
    ebats::json::StringSink sink(&out);
    ebats::json::Writer w(sink);
    w.StartArray();
    for (const auto& d : *depths) {
      w.StartObject();
      w.Key("topic");
      ebats::json::write_string(w, d.row == ebats::QueueDepth::Row::topic ? d.topic : std::string());
      if (d.row != ebats::QueueDepth::Row::topic) {
        w.Key("row");
        w.String(d.row == ebats::QueueDepth::Row::events ? "events" : "delay_levels");
      }
      // Counts the backend cannot know (RabbitMQ: leased, done) are null.
      const std::tuple<const char*, uint64_t, bool> counts[] = {{"pending", d.ready, true},
                                                                {"delayed", d.delayed, true},
                                                                {"leased", d.leased, d.leased_known},
                                                                {"done", d.done, d.done_known},
                                                                {"dead", d.dead, true}};
      for (const auto& [key, count, known] : counts) {
        w.Key(key);
        if (known) {
          w.Uint64(count);
        } else {
          w.Null();
        }
      }
      w.EndObject();
    }
    w.EndArray();
    std::cout << out << "\n";
    return kOk;
  }
  auto cell = [](uint64_t n, bool known) { return known ? std::to_string(n) : std::string("-"); };
  std::cout << std::left << std::setw(24) << "TOPIC" << std::right << std::setw(10) << "PENDING" << std::setw(10)
            << "DELAYED" << std::setw(10) << "LEASED" << std::setw(10) << "DONE" << std::setw(10) << "DEAD" << "\n";
  bool unknown = false;
  for (const auto& d : *depths) {
    unknown = unknown || !d.leased_known || !d.done_known;
    std::cout << std::left << std::setw(24) << row_name(d) << std::right << std::setw(10) << d.ready
              << std::setw(10) << d.delayed << std::setw(10) << cell(d.leased, d.leased_known) << std::setw(10)
              << cell(d.done, d.done_known) << std::setw(10) << d.dead << "\n";
  }
  if (unknown) {
    std::cout << "(RabbitMQ counts neither the tasks workers hold (LEASED) nor the finished ones (DONE): see the "
                 "results files or the results stream; DELAYED of a topic counts its retries and delayed tasks that "
                 "are due, the delay levels hold the rest)\n";
  }
  return kOk;
}

// -------------------------------------------------------------------- setup

int cmd_setup(const Context& ctx, const std::vector<std::string>& argv) {
  if (!argv.empty()) return usage_error("setup takes no arguments");
  auto broker = open_broker(ctx, /*create=*/true);
  if (!broker.ok()) return report(broker.status());
  const std::vector<std::string> topics = ctx.config->topics();
  ebats::Status s = (*broker)->setup(topics);
  if (s.ok()) s = (*broker)->recount();
  if (!s.ok()) return report(s);
  if (!ctx.config->is_amqp()) {
    std::cout << "ready: database " << ctx.config->sqlite_path() << " is set up\n";
    return kOk;
  }
  std::string names;
  for (const std::string& topic : topics) names += (names.empty() ? "" : ", ") + topic;
  std::cout << "ready: on " << ctx.config->broker_url << ", the exchanges and queues of the events, the delay levels, "
            << "the dead letters, the results and " << topics.size() << (topics.size() == 1 ? " topic" : " topics")
            << (names.empty() ? std::string() : " (" + names + ")");
  const size_t sources = ctx.config->sources.size();
  if (sources > 0) std::cout << ", and the queues of " << sources << (sources == 1 ? " source" : " sources");
  std::cout << " exist\n";
  return kOk;
}

int run(int argc, char** argv) {
  po::options_description global("Global options");
  std::string config_path, command;
  std::vector<std::string> ignored;
  global.add_options()("config,c", po::value(&config_path), "config file")("help,h", "help")("version,V", "version")(
      "command", po::value(&command), "")("subargs", po::value(&ignored), "");
  po::positional_options_description pos;
  pos.add("command", 1).add("subargs", -1);
  po::variables_map vm;
  po::parsed_options parsed(&global);
  try {
    parsed = po::command_line_parser(argc, argv).options(global).positional(pos).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  if (vm.count("help") && command.empty()) {
    print_help();
    return kOk;
  }
  if (vm.count("version")) {
    std::cout << "ebatsctl " << EBATS_VERSION << "\n";
    return kOk;
  }
  if (command.empty()) return usage_error("no command given");
  // Everything after the command, options included, belongs to the command.
  std::vector<std::string> sub = po::collect_unrecognized(parsed.options, po::include_positional);
  if (!sub.empty() && sub.front() == command) sub.erase(sub.begin());
  if (vm.count("help")) {
    print_help();
    return kOk;
  }
  if (config_path.empty()) {
    const char* env = std::getenv("EBATS_CONFIG");
    if (env && *env) config_path = env;
  }
  if (config_path.empty()) return usage_error("no config file: give --config FILE or set EBATS_CONFIG");
  ebats::ConfigLoad load = ebats::load_config(config_path);
  for (const auto& w : load.warnings) std::cerr << w.to_string() << "\n";
  if (!load.config) {
    for (const auto& e : load.errors) std::cerr << e.to_string() << "\n";
    return kUsage;
  }
  ::umask(0007);  // the database's -wal/-shm files stay group-accessible
  Context ctx;
  ctx.config = load.config;
  if (command == "publish") return cmd_publish(ctx, sub);
  if (command == "enqueue") return cmd_enqueue(ctx, sub);
  if (command == "stats") return cmd_stats(ctx, sub);
  if (command == "setup") return cmd_setup(ctx, sub);
  if (command == "dead") return cmd_dead(ctx, sub);
  if (command == "task") return cmd_task(ctx, sub);
  if (command == "results") return cmd_results(ctx, sub);
  if (command == "events") return cmd_events(ctx, sub);
  if (command == "plugins") return cmd_plugins(ctx, sub);
  return usage_error("unknown command '" + command + "'");
}

// Standard input, output or error closed by the caller (`<&-`) would be
// taken by the next file opened: the stop signals' fd read as stdin, and
// `publish --jsonl` waited on it for good. Each one closed reads or writes
// /dev/null instead.
void open_closed_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int opened = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);  // the lowest free fd: this one
    if (opened != fd && opened >= 0) ::close(opened);
  }
}

}  // namespace

int main(int argc, char** argv) {
  open_closed_standard_fds();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ebatsctl: fatal: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "ebatsctl: fatal: unknown exception\n";
  }
  return kFailure;
}
