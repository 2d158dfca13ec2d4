#include "daemon_cli.h"

#include <unistd.h>

#include <boost/algorithm/string/join.hpp>
#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <set>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/envelope.h"
#include "metrics/http_server.h"
#include "supervisor/child_program.h"
#include "supervisor/plugin_probe.h"

namespace po = boost::program_options;

namespace ebats {
namespace {

const char* program_name(DaemonKind kind) {
  switch (kind) {
    case DaemonKind::scheduler: return "ebats-scheduler";
    case DaemonKind::ntask_worker: return "ebats-ntask-worker";
    case DaemonKind::dtask_worker: return "ebats-dtask-worker";
  }
  return "ebats";
}

const char* summary(DaemonKind kind) {
  switch (kind) {
    case DaemonKind::scheduler: return "routes published events into tasks, as registered in the config's events:";
    case DaemonKind::ntask_worker: return "runs the tasks of one topic that are due now, in supervised child processes";
    case DaemonKind::dtask_worker: return "runs the delayed tasks and retries of one topic once they come due";
  }
  return "";
}

// The --log-level / --log-format value, or else the environment variable's;
// false (after saying why) when the one used names no level or format.
template <class T>
bool resolve_log_option(const char* program, const char* option, const char* env_name, const std::string& given,
                        std::optional<T> (*parse)(std::string_view), const char* choices, T* out) {
  std::string value = given;
  std::string from = std::string("--") + option;
  if (value.empty()) {
    const char* env = std::getenv(env_name);
    if (env == nullptr || *env == '\0') return true;
    value = env;
    from = std::string("$") + env_name;
  }
  const auto parsed = parse(value);
  if (!parsed) {
    std::cerr << program << ": " << from << ": '" << value << "' is not one of " << choices << "\n";
    return false;
  }
  *out = *parsed;
  return true;
}

}  // namespace

std::optional<int> parse_daemon_args(int argc, char** argv, DaemonKind kind, DaemonArgs* out) {
  const bool worker = kind != DaemonKind::scheduler;
  std::string log_level, log_format;
  po::options_description visible("Options");
  visible.add_options()
      ("config,c", po::value<std::string>(&out->config_path), "config file (default: $EBATS_CONFIG)")
      ("log-level", po::value<std::string>(&log_level)->value_name("LEVEL"),
       "debug, info, warn or error: the least severe lines written (default: $EBATS_LOG_LEVEL, else info)")
      ("log-format", po::value<std::string>(&log_format)->value_name("FORMAT"),
       "text (timestamped lines; the journal adds its own time) or json (one object per line, for collectors) "
       "(default: $EBATS_LOG_FORMAT, else text)")
      ("metrics-listen", po::value<std::string>(&out->metrics_listen)->value_name("HOST:PORT"),
       "serve Prometheus metrics at http://HOST:PORT/metrics (PORT 0: a free port, logged; default: "
       "$EBATS_METRICS_LISTEN, else no metrics server)")
      ("check-config", po::bool_switch(&out->check_config),
       "validate the config, the plugins (every registered task has a handler) and, on RabbitMQ, the broker "
       "login, then exit 0 (ok), 1 (a check failed) or 2 (the config has errors)")
      ("help,h", "show this help and exit")
      ("version,V", "show the version and exit");
  if (worker) {
    visible.add_options()("topic,t", po::value<std::string>(&out->topic), "the topic this worker serves");
  }
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(visible).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << program_name(kind) << ": " << e.what() << "\nTry '" << program_name(kind) << " --help'.\n";
    return kExitUsage;
  }
  if (vm.count("help")) {
    std::cout << "Usage: " << program_name(kind) << " --config FILE" << (worker ? " --topic TOPIC" : "")
              << " [--check-config] [--log-level LEVEL] [--log-format FORMAT] [--metrics-listen HOST:PORT]\n"
              << program_name(kind) << " " << summary(kind) << ".\n\n"
              << visible << "\nSIGTERM or SIGINT stops it cleanly; nothing is lost.\n";
    return kExitOk;
  }
  if (vm.count("version")) {
    std::cout << program_name(kind) << " " << EBATS_VERSION << "\n";
    return kExitOk;
  }
  if (!resolve_log_option(program_name(kind), "log-level", "EBATS_LOG_LEVEL", log_level, &parse_log_level,
                          "debug, info, warn, error", &out->log.level) ||
      !resolve_log_option(program_name(kind), "log-format", "EBATS_LOG_FORMAT", log_format, &parse_log_format,
                          "text, json", &out->log.format)) {
    std::cerr << "Try '" << program_name(kind) << " --help'.\n";
    return kExitUsage;
  }
  {
    std::string from = "--metrics-listen";
    if (out->metrics_listen.empty()) {
      const char* env = std::getenv("EBATS_METRICS_LISTEN");
      if (env && *env) out->metrics_listen = env;
      from = "$EBATS_METRICS_LISTEN";
    }
    if (!out->metrics_listen.empty()) {
      auto parsed = metrics::parse_listen_address(out->metrics_listen);
      if (!parsed.ok()) {
        std::cerr << program_name(kind) << ": " << from << ": " << parsed.status().message() << "\nTry '"
                  << program_name(kind) << " --help'.\n";
        return kExitUsage;
      }
    }
  }
  if (out->config_path.empty()) {
    const char* env = std::getenv("EBATS_CONFIG");
    if (env && *env) out->config_path = env;
  }
  if (out->config_path.empty()) {
    std::cerr << program_name(kind) << ": no config file: give --config FILE or set EBATS_CONFIG\n";
    return kExitUsage;
  }
  if (worker && out->topic.empty()) {
    std::cerr << program_name(kind) << ": --topic TOPIC is required\n";
    return kExitUsage;
  }
  if (worker && !is_valid_topic(out->topic)) {
    std::cerr << program_name(kind) << ": invalid topic '" << out->topic << "': use 1-64 of [A-Za-z0-9_-]\n";
    return kExitUsage;
  }
  return std::nullopt;
}

std::shared_ptr<const Config> load_config_or_report(const std::string& path, const Logger* log) {
  ConfigLoad load = load_config(path);
  if (log != nullptr && log->options().format == LogFormat::json) {
    for (const auto& w : load.warnings) log->warn(w.to_string());
    for (const auto& e : load.errors) log->error(e.to_string());
    return load.config;
  }
  for (const auto& w : load.warnings) std::cerr << w.to_string() << "\n";
  for (const auto& e : load.errors) std::cerr << e.to_string() << "\n";
  return load.config;
}

void add_child_log_args(std::vector<std::string>* argv, const Logger& log) {
  argv->insert(argv->end(), {"--log-level", log_level_name(log.options().level), "--log-format",
                             log_format_name(log.options().format), "--log-name", log.component()});
}

void add_child_log_args(std::function<std::vector<std::string>(const Config&)>* make, const Logger& log) {
  *make = [inner = std::move(*make), &log](const Config& config) {
    std::vector<std::string> argv = inner(config);
    add_child_log_args(&argv, log);
    return argv;
  };
}

int run_config_check(const Config& config, const std::string& topic) {
  if (config.is_amqp()) {
    // A broker that cannot be reached or refuses the login fails the check.
    SystemClock clock;
    auto broker = open_broker(broker_options(config, "check-config"), clock);
    if (!broker.ok()) {
      std::cerr << config.path << ": error: broker: " << broker.status().message() << "\n";
      return kExitFailure;
    }
  }
  auto program = ChildProgram::locate();
  if (!program.ok()) {
    std::cerr << "error: " << program.status().message() << "\n";
    return kExitFailure;
  }
  auto probe = probe_plugins(*program, child_args(config), config.plugin_settings);
  if (!probe.ok()) {
    std::cerr << config.path << ": error: " << probe.status().message() << "\n";
    return kExitFailure;
  }
  int errors = 0;
  for (const auto& e : probe->errors) {
    std::cerr << "error: plugin refused: " << e << "\n";
    ++errors;
  }
  for (const auto& what : unhandled_registrations(config, topic, probe->tasks)) {
    std::cerr << config.path << ": error: " << what << ", but no plugin in " << config.plugins_dir << " handles it\n";
    ++errors;
  }
  for (const auto& name : unused_plugin_settings(config.plugin_settings, probe->plugins)) {
    std::cerr << config.path << ": warning: plugins.settings." << name << ": no plugin named '" << name
              << "' was loaded from " << config.plugins_dir << ", so nothing uses these settings (plugins loaded: "
              << (probe->plugins.empty() ? std::string("none") : boost::algorithm::join(probe->plugins, ", ")) << ")\n";
  }
  if (errors) {
    std::cerr << errors << " error(s)\n";
    return kExitFailure;
  }
  std::cout << config.path << ": ok (" << config.events.size() << " events, " << probe->tasks.size()
            << " task handlers in " << config.plugins_dir << ")\n";
  return kExitOk;
}

}  // namespace ebats
