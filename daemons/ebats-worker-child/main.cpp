// ebats-worker-child: the program a worker's child processes run (and the
// plugin probe of --check-config and ebatsctl). Not for people: a worker
// starts it with its socket on fd 3 (supervisor/worker_child.h). It links
// only what running plugins needs, so each child costs a few MB, not a
// daemon's worth of libraries (docs/ARCHITECTURE.md, "Worker children").
#include <boost/program_options.hpp>
#include <iostream>
#include <string>

#include "daemon/logger.h"
#include "supervisor/worker_child.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  ebats::WorkerChildOptions options;
  std::string level = "info", format = "text";
  po::options_description described("ebats-worker-child options (set by the worker that starts it)");
  described.add_options()
      ("plugins-dir", po::value<std::string>(&options.plugins_dir)->required(), "the plugins to load")
      ("max-frame", po::value<uint64_t>(&options.max_frame_bytes), "the largest frame from the worker, in bytes")
      ("message-limit", po::value<uint64_t>(&options.message_limit_bytes), "the longest result message, in bytes")
      ("log-level", po::value<std::string>(&level), "debug, info, warn or error")
      ("log-format", po::value<std::string>(&format), "text or json")
      ("log-name", po::value<std::string>(&options.log_name), "the daemon name its log lines carry")
      ("help,h", "show this help and exit");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, described), vm);
    if (vm.count("help")) {
      std::cout << "Usage: ebats-worker-child --plugins-dir DIR [options] 3<>SOCKET\n"
                << "Runs the tasks a worker sends over fd 3; started by ebats-ntask-worker and ebats-dtask-worker.\n\n"
                << described;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "ebats-worker-child: " << e.what() << "\n";
    return 2;
  }
  const auto parsed_level = ebats::parse_log_level(level);
  const auto parsed_format = ebats::parse_log_format(format);
  if (!parsed_level || !parsed_format) {
    std::cerr << "ebats-worker-child: --log-level takes debug, info, warn or error; --log-format text or json\n";
    return 2;
  }
  options.log.level = *parsed_level;
  options.log.format = *parsed_format;
  return ebats::run_worker_child(3, options);
}
