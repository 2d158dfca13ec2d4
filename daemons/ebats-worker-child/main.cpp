// ebats-worker-child: the program a worker's child processes run (and the
// plugin probe of --check-config and ebatsctl). Not for people: a worker
// starts it with its socket on fd 3 (supervisor/worker_child.h). It links
// only what running plugins needs, so each child costs a few MB, not a
// daemon's worth of libraries (docs/ARCHITECTURE.md, "Worker children").
// Its options are read with glibc's getopt_long, not Boost.Program_options,
// and it writes with stdio, not iostreams: the library and the iostreams'
// start-up touched 1 MiB of pages in every child (bench/notes.md).
#include <getopt.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "daemon/logger.h"
#include "supervisor/worker_child.h"

namespace {

constexpr const char* kUsage =
    "Usage: ebats-worker-child --plugins-dir DIR [options] 3<>SOCKET\n"
    "Runs the tasks a worker sends over fd 3; started by ebats-ntask-worker and ebats-dtask-worker.\n\n"
    "ebats-worker-child options (set by the worker that starts it):\n"
    "  --plugins-dir DIR      the plugins to load\n"
    "  --max-frame BYTES      the largest frame from the worker, in bytes\n"
    "  --message-limit BYTES  the longest result message, in bytes\n"
    "  --log-level LEVEL      debug, info, warn or error\n"
    "  --log-format FORMAT    text or json\n"
    "  --log-name NAME        the daemon name its log lines carry\n"
    "  -h [ --help ]          show this help and exit\n";

enum Option { kPluginsDir = 1, kMaxFrame, kMessageLimit, kLogLevel, kLogFormat, kLogName };

bool read_bytes(const char* text, uint64_t* out) {
  const char* end = text + std::strlen(text);
  auto [rest, error] = std::from_chars(text, end, *out);
  return error == std::errc() && rest == end && rest != text;
}

int refuse(const std::string& message) {
  std::fprintf(stderr, "ebats-worker-child: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ebats::WorkerChildOptions options;
  std::string level = "info", format = "text";
  const option long_options[] = {
      {"plugins-dir", required_argument, nullptr, kPluginsDir},
      {"max-frame", required_argument, nullptr, kMaxFrame},
      {"message-limit", required_argument, nullptr, kMessageLimit},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"log-format", required_argument, nullptr, kLogFormat},
      {"log-name", required_argument, nullptr, kLogName},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;  // its own messages, below
  bool plugins_dir_given = false;
  for (;;) {
    const int previous = optind;
    const int opt = getopt_long(argc, argv, ":h", long_options, nullptr);
    if (opt == -1) break;
    switch (opt) {
      case 'h':
        std::fputs(kUsage, stdout);
        return 0;
      case kPluginsDir:
        options.plugins_dir = optarg;
        plugins_dir_given = true;
        break;
      case kMaxFrame:
        if (!read_bytes(optarg, &options.max_frame_bytes)) {
          return refuse(std::string("--max-frame takes a number of bytes, not '") + optarg + "'");
        }
        break;
      case kMessageLimit:
        if (!read_bytes(optarg, &options.message_limit_bytes)) {
          return refuse(std::string("--message-limit takes a number of bytes, not '") + optarg + "'");
        }
        break;
      case kLogLevel: level = optarg; break;
      case kLogFormat: format = optarg; break;
      case kLogName: options.log_name = optarg; break;
      case ':': return refuse(std::string(argv[previous]) + " needs a value");
      default: return refuse(std::string("unknown option '") + argv[previous] + "'; --help lists them");
    }
  }
  if (optind < argc) return refuse(std::string("unexpected argument '") + argv[optind] + "'");
  if (!plugins_dir_given) return refuse("--plugins-dir is required");
  const auto parsed_level = ebats::parse_log_level(level);
  const auto parsed_format = ebats::parse_log_format(format);
  if (!parsed_level || !parsed_format) {
    return refuse("--log-level takes debug, info, warn or error; --log-format text or json");
  }
  options.log.level = *parsed_level;
  options.log.format = *parsed_format;
  return ebats::run_worker_child(3, options);
}
