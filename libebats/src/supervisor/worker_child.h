// The worker child process: loads the plugins once, then runs the tasks the
// parent sends over fd 3, one at a time, answering each RUN with a RESULT.
// It exits 0 when the parent closes the socket, and dies with the parent
// (PR_SET_PDEATHSIG). It never reads the YAML file or opens the broker.
#pragma once

#include <cstdint>
#include <string>

#include "daemon/logger.h"
#include "supervisor/frame.h"

namespace ebats {

struct WorkerChildOptions {
  std::string plugins_dir;
  std::string topic;
  // How the plugins' log lines are written: the worker's level and format,
  // under the worker's name (so a collector sees one daemon).
  LogOptions log;
  std::string log_name = "worker-child";
  uint64_t max_frame_bytes = (1u << 20) + kFrameMarginBytes;
  uint64_t message_limit_bytes = 4096;
};

// Runs the child's loop on `fd`. Returns the process exit code.
int run_worker_child(int fd, const WorkerChildOptions& options);

}  // namespace ebats
