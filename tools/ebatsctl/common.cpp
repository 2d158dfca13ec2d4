// ebatsctl: helpers every command group uses (ctl.h).

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "ctl.h"
#include "supervisor/child_program.h"

namespace po = boost::program_options;

namespace ebatsctl {

int usage_error(const std::string& msg) {
  std::cerr << "ebatsctl: " << msg << "\nTry 'ebatsctl --help'.\n";
  return kUsage;
}

int exit_code_of(const ebats::Status& s) {
  if (s.code() == ebats::StatusCode::not_found) return kNotFound;
  if (s.code() == ebats::StatusCode::invalid_argument || s.code() == ebats::StatusCode::too_large) return kUsage;
  return kFailure;
}

int report(const ebats::Status& s) {
  std::cerr << "ebatsctl: " << s.message() << "\n";
  return exit_code_of(s);
}

std::string format_time(ebats::WallMs ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

ebats::Result<std::unique_ptr<ebats::Broker>> open_broker(const Context& ctx, bool create) {
  ebats::BrokerOptions options = ebats::broker_options(*ctx.config, "ebatsctl");
  options.create = create;
  return ebats::open_broker(options, ctx.clock);
}

std::optional<int> parse_subcommand(const std::string& name, const std::vector<std::string>& argv,
                                    po::options_description& opts, std::vector<std::string>* positional) {
  opts.add_options()("args", po::value(positional)->composing(), "");
  po::positional_options_description p;
  p.add("args", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argv).options(opts).positional(p).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(name + ": " + e.what());
  }
  return std::nullopt;
}

ebats::Result<uint64_t> parse_id(const std::string& s) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  // Digits only: strtoull would take " 7", "+7" and "-1" (as 2^64-1).
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0])) || *end != '\0' || errno != 0) {
    return ebats::Status::invalid("'" + s + "' is not a dead-letter ID (the number in the first column of 'dead list')");
  }
  return static_cast<uint64_t>(v);
}

void print_json(const std::function<void(ebats::json::Writer&)>& write) {
  std::string out;
  ebats::json::StringSink sink(&out);
  ebats::json::Writer w(sink);
  write(w);
  std::cout << out << "\n";
}

ebats::Result<ebats::PluginProbe> probe_plugins(const Context& ctx) {
  auto program = ebats::ChildProgram::locate();
  if (!program.ok()) return ebats::Status::io("loading the plugins needs " + program.status().message());
  std::vector<std::string> args = ebats::child_args(*ctx.config);
  args.insert(args.end(), {"--log-level", "error"});
  return ebats::probe_plugins(*program, args, ctx.config->plugin_settings);
}

}  // namespace ebatsctl
