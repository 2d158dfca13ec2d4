// ebatsctl task show and results tail: what became of tasks, read from the
// broker's results (SQLite's results table; RabbitMQ keeps none to read) and
// dead letters.
#include <poll.h>

#include <algorithm>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "ctl.h"
#include "daemon/signal_fd.h"
#include "ebats/result.h"

namespace ebatsctl {
namespace {

constexpr int kFollowPollMs = 500;  // results tail --follow reads new rows this often

void write_result_json(ebats::json::Writer& w, const ebats::ResultRecord& r) {
  const std::string json = ebats::result_to_json(r);
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

std::string duration_text(int64_t ms) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3) << static_cast<double>(ms) / 1000.0 << "s";
  return s.str();
}

std::string where_text(const ebats::ResultRecord& r) {
  return (r.host.empty() ? std::string("-") : r.host) + (r.pid > 0 ? "/" + std::to_string(r.pid) : std::string());
}

void print_results_header(bool with_task) {
  std::cout << std::left << std::setw(22) << "FINISHED";
  if (with_task) std::cout << std::setw(12) << "TOPIC" << std::setw(20) << "TASK" << std::setw(38) << "TASK ID";
  std::cout << std::setw(9) << "ATTEMPT" << std::setw(8) << "STATUS" << std::setw(10) << "TIME" << std::setw(24)
            << "WHERE (HOST/PID)" << "MESSAGE\n";
}

void print_result_row(const ebats::ResultRecord& r, bool with_task) {
  std::cout << std::left << std::setw(22) << format_time(r.finished_at);
  if (with_task) std::cout << std::setw(12) << r.topic << std::setw(20) << r.task << std::setw(38) << r.task_id;
  std::cout << std::setw(9) << r.attempt << std::setw(8) << r.status << std::setw(10) << duration_text(r.time_ms)
            << std::setw(24) << where_text(r) << r.message << "\n";
}

}  // namespace

int cmd_task(const Context& ctx, const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] != "show") return usage_error("task takes a subcommand: show ID");
  bool json = false;
  std::vector<std::string> pos;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "--json") {
      json = true;
    } else if (!argv[i].empty() && argv[i][0] == '-') {
      return usage_error("task show: unknown option '" + argv[i] + "'");
    } else {
      pos.push_back(argv[i]);
    }
  }
  if (pos.size() != 1) return usage_error("task show takes one task ID (printed by enqueue, in results and dead letters)");
  const std::string& id = pos[0];
  auto broker = open_broker(ctx);
  if (!broker.ok()) return report(broker.status());
  ebats::ResultQuery query;
  query.task_id = id;
  auto results = (*broker)->read_results(query);
  const bool no_results_table = results.status().code() == ebats::StatusCode::unsupported;
  if (!results.ok() && !no_results_table) return report(results.status());
  auto all_dead = (*broker)->dead_letters().list(0);
  if (!all_dead.ok()) return report(all_dead.status());
  std::vector<ebats::DeadLetterEntry> dead;
  for (auto& e : *all_dead) {
    if (e.letter.kind == "task" && e.letter.id == id) dead.push_back(std::move(e));
  }
  const std::vector<ebats::ResultRow> rows = results.ok() ? *results : std::vector<ebats::ResultRow>{};
  if (rows.empty() && dead.empty()) {
    std::cerr << "ebatsctl: no " << (no_results_table ? "" : "result and no ") << "dead letter for task " << id
              << (no_results_table ? " (RabbitMQ keeps no results to read: see the workers' results files or the "
                                     "results stream)"
                                   : " (a task still queued or running has neither; results.keep may have pruned "
                                     "old results)")
              << "\n";
    return kNotFound;
  }
  if (json) {
    print_json([&](ebats::json::Writer& w) {
      w.StartObject();
      w.Key("task_id");
      ebats::json::write_string(w, id);
      w.Key("results");  // null: the broker keeps no results to read (RabbitMQ)
      if (no_results_table) {
        w.Null();
      } else {
        w.StartArray();
        for (const auto& r : rows) write_result_json(w, r.record);
        w.EndArray();
      }
      w.Key("dead_letters");
      w.StartArray();
      for (const auto& e : dead) w.Uint64(e.seq);
      w.EndArray();
      w.EndObject();
    });
    return kOk;
  }
  std::cout << "task id:     " << id << "\n";
  if (!rows.empty()) {
    const auto& last = rows.back().record;
    std::cout << "task:        " << last.task << "\ntopic:       " << last.topic
              << "\ntrace:       " << (last.trace.empty() ? "-" : last.trace) << "\nlast status: " << last.status
              << "\nattempts:    " << rows.size() << "\n\n";
    print_results_header(false);
    for (const auto& r : rows) print_result_row(r.record, false);
  } else if (no_results_table) {
    std::cout << "results:     not kept by RabbitMQ; "
              << results.status().message() << "\n";
  }
  for (const auto& e : dead) {
    std::cout << "dead letter: " << e.seq << " (" << e.letter.reason
              << (e.letter.error.empty() ? "" : ": " + e.letter.error) << ", " << format_time(e.letter.dead_at)
              << "); see ebatsctl dead show " << e.seq << "\n";
  }
  return kOk;
}

int cmd_results(const Context& ctx, const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] != "tail") return usage_error("results takes a subcommand: tail");
  bool json = false, follow = false;
  uint32_t lines = 10;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "--json") {
      json = true;
    } else if (argv[i] == "--follow" || argv[i] == "-f") {
      follow = true;
    } else if ((argv[i] == "--lines" || argv[i] == "-n") && i + 1 < argv.size()) {
      auto n = parse_id(argv[++i]);
      if (!n.ok() || *n > 1'000'000) return usage_error("--lines takes a number from 0 to 1000000, not '" + argv[i] + "'");
      lines = static_cast<uint32_t>(*n);
    } else {
      return usage_error("results tail: unknown argument '" + argv[i] + "'");
    }
  }
  // Blocked before the broker starts a thread; SIGINT and SIGTERM end --follow with exit 0.
  std::optional<ebats::SignalFd> stop;
  if (follow) {
    auto opened = ebats::SignalFd::open({SIGINT, SIGTERM});
    if (!opened.ok()) return report(opened.status());
    stop.emplace(std::move(opened).value());
  }
  auto broker = open_broker(ctx);
  if (!broker.ok()) return report(broker.status());
  bool header = false;
  auto print = [&](const std::vector<ebats::ResultRow>& rows) {
    for (const auto& r : rows) {
      if (json) {
        std::cout << ebats::result_to_json(r.record) << "\n";
        continue;
      }
      if (!header) {
        print_results_header(true);
        header = true;
      }
      print_result_row(r.record, true);
    }
    std::cout << std::flush;
  };
  ebats::ResultQuery query;
  query.newest = lines;
  uint64_t last = 0;
  if (lines > 0) {
    auto rows = (*broker)->read_results(query);
    if (!rows.ok()) return report(rows.status());
    print(*rows);
    if (!rows->empty()) last = rows->back().seq;
  }
  if (lines == 0 || last == 0) {  // start after the newest row, whatever there is
    query.newest = 1;
    auto newest = (*broker)->read_results(query);
    if (!newest.ok()) return report(newest.status());
    if (!newest->empty()) last = std::max(last, newest->back().seq);
  }
  while (follow) {
    pollfd pfd{stop->fd(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, kFollowPollMs);
    if (ready > 0 && !stop->drain().empty()) break;
    query.after_seq = last;
    query.newest = 0;
    auto rows = (*broker)->read_results(query);
    if (!rows.ok()) return report(rows.status());
    print(*rows);
    if (!rows->empty()) last = rows->back().seq;
  }
  return kOk;
}

}  // namespace ebatsctl
