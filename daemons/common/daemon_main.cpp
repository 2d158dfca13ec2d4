#include "daemon_main.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <iostream>

#include "daemon/host_name.h"
#include "daemon/logger.h"
#include "daemon/service_notifier.h"
#include "daemon/signal_fd.h"
#include "daemon/unique_fd.h"
#include "ebats/broker.h"
#include "metrics/http_server.h"
#include "scheduler/scheduler.h"
#include "supervisor/worker.h"

namespace ebats {
namespace {

// A config the broker refuses (a queue declared with other arguments, a
// password file others may read) is a config error: exit 2, which the units
// list in RestartPreventExitStatus= so systemd does not restart into it.
// SIGUSR1, SIGUSR2 and SIGALRM mean nothing to a daemon; by default they
// would kill it without draining. SIGXFSZ (a write past RLIMIT_FSIZE) would
// kill it too; ignored, the write fails with EFBIG and is handled like a
// full disk. (Its children get their defaults back.)
void ignore_stray_signals() {
  for (int sig : {SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ}) std::signal(sig, SIG_IGN);
}

int exit_code_for(const Status& s) {
  return s.code() == StatusCode::invalid_argument ? kExitUsage : kExitFailure;
}

// Opens the configured broker; what the backend reports on its own (a lost
// connection, a reconnect) goes to the daemon's log.
Result<std::unique_ptr<Broker>> open_configured_broker(const Config& config, const std::string& owner,
                                                       const Clock& clock, const Logger& log) {
  BrokerOptions bo = broker_options(config, owner);
  bo.on_event = [&log](const BrokerEvent& e) {
    const LogLevel level = e.level == BrokerEvent::Level::error  ? LogLevel::error
                           : e.level == BrokerEvent::Level::warn ? LogLevel::warn
                                                                 : LogLevel::info;
    log.log(level, "broker: " + e.message);
  };
  return open_broker(bo, clock);
}

// Refuses a second scheduler on the same SQLite file: one router keeps
// fan-out exactly-once. The lock dies with the process.
Result<UniqueFd> lock_scheduler(const Config& config) {
  const std::string db = config.sqlite_path();
  if (db.empty()) return UniqueFd();
  const std::string path = db + ".scheduler.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0660));
  if (!fd.valid()) return Status::io("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::busy("another ebats-scheduler already runs on " + db + " (lock " + path + " is held)");
  }
  return fd;
}

// --metrics-listen ($EBATS_METRICS_LISTEN), else the config's metrics.listen
// entry for this daemon: the metrics server, started on its own thread; null
// when not asked for. False (logged) when it cannot listen.
bool start_metrics(const DaemonArgs& args, const Config& config, const metrics::Registry& registry, const Logger& log,
                   std::unique_ptr<metrics::MetricsServer>* out) {
  std::string listen = args.metrics_listen;
  if (listen.empty()) {
    auto it = config.metrics_listen.find(log.component());
    if (it == config.metrics_listen.end()) return true;
    listen = it->second;
  }
  auto address = metrics::parse_listen_address(listen);  // checked by parse_daemon_args or the loader
  auto server = address.ok() ? metrics::MetricsServer::start(*address, registry, log)
                             : Result<std::unique_ptr<metrics::MetricsServer>>(address.status());
  if (!server.ok()) {
    log.error("cannot start the metrics server", {{"listen", listen}, {"error", server.status().message()}});
    return false;
  }
  *out = std::move(server).value();
  return true;
}

int worker_main_impl(int argc, char** argv, DaemonKind kind) {
  DaemonArgs args;
  if (auto code = parse_daemon_args(argc, argv, kind, &args)) return *code;
  const Lane lane = kind == DaemonKind::ntask_worker ? Lane::ntask : Lane::dtask;
  Logger log(std::string(lane_name(lane)) + "-worker@" + args.topic, args.log);
  auto config = load_config_or_report(args.config_path, args.check_config ? nullptr : &log);
  if (!config) return kExitUsage;
  if (args.check_config) return run_config_check(*config, args.topic);

  if (!config->workers.count(args.topic)) {
    log.warn("topic has no workers: entry in the config; using defaults", {{"topic", args.topic}});
  }
  auto child_program = ChildProgram::locate();
  if (!child_program.ok()) {
    log.error("cannot run worker children", {{"error", child_program.status().message()}});
    return kExitFailure;
  }
  ignore_stray_signals();
  auto signals = SignalFd::open({SIGTERM, SIGINT, SIGHUP});
  if (!signals.ok()) {
    log.error("cannot set up signals", {{"error", signals.status().message()}});
    return kExitFailure;
  }
  SystemClock clock;
  auto broker = open_configured_broker(*config, host_name() + "/" + lane_name(lane) + "/" + args.topic, clock, log);
  if (!broker.ok()) {
    log.error("cannot open the broker", {{"url", config->broker_url}, {"error", broker.status().message()}});
    return exit_code_for(broker.status());
  }
  metrics::Registry registry;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (!start_metrics(args, *config, registry, log, &metrics_server)) return kExitFailure;
  ServiceNotifier notifier;
  WorkerSetup setup;
  setup.lane = lane;
  setup.topic = args.topic;
  setup.config = config;
  setup.child_program = std::move(child_program).value();
  setup.child_args = child_args;
  add_child_log_args(&setup.child_args, log);
  setup.metrics = metrics_server ? &registry : nullptr;  // no server: no metrics kept
  Worker worker(std::move(setup), **broker, clock, log, notifier);
  Status s = worker.run(*signals);
  if (!s.ok()) {
    log.error("worker stopped with an error", {{"error", s.message()}});
    return exit_code_for(s);
  }
  return kExitOk;
}

int scheduler_main_impl(int argc, char** argv) {
  DaemonArgs args;
  if (auto code = parse_daemon_args(argc, argv, DaemonKind::scheduler, &args)) return *code;
  Logger log("scheduler", args.log);
  auto config = load_config_or_report(args.config_path, args.check_config ? nullptr : &log);
  if (!config) return kExitUsage;
  if (args.check_config) return run_config_check(*config, "");

  ignore_stray_signals();
  auto signals = SignalFd::open({SIGTERM, SIGINT, SIGHUP});
  if (!signals.ok()) {
    log.error("cannot set up signals", {{"error", signals.status().message()}});
    return kExitFailure;
  }
  SystemClock clock;
  auto broker = open_configured_broker(*config, host_name() + "/scheduler", clock, log);
  if (!broker.ok()) {
    log.error("cannot open the broker", {{"url", config->broker_url}, {"error", broker.status().message()}});
    return exit_code_for(broker.status());
  }
  auto lock = lock_scheduler(*config);
  if (!lock.ok()) {
    log.error("cannot start", {{"error", lock.status().message()}});
    return kExitFailure;
  }
  metrics::Registry registry;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (!start_metrics(args, *config, registry, log, &metrics_server)) return kExitFailure;
  ServiceNotifier notifier;
  Scheduler scheduler(config, **broker, clock, log, notifier, metrics_server ? &registry : nullptr);
  Status s = scheduler.run(*signals);
  if (!s.ok()) {
    log.error("scheduler stopped with an error", {{"error", s.message()}});
    return exit_code_for(s);
  }
  log.info("stopped");
  return kExitOk;
}

// The daemon boundary: SIGPIPE ignored (peers that go away, like a crashed
// child, surface as EPIPE on the write, not as a signal that ends the daemon)
// and no exception escapes main.
template <class Body>
int run_daemon(Body body) {
  ::signal(SIGPIPE, SIG_IGN);
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << "fatal: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "fatal: unknown exception\n";
  }
  return kExitFailure;
}

}  // namespace

int worker_main(int argc, char** argv, DaemonKind kind) {
  return run_daemon([&] { return worker_main_impl(argc, argv, kind); });
}

int scheduler_main(int argc, char** argv) {
  return run_daemon([&] { return scheduler_main_impl(argc, argv); });
}

}  // namespace ebats
