// ChildProgram: the executable a worker's children run, ebats-worker-child,
// found once and held open.
//
// Children started later (after a crash, a timeout or a reload) run the file
// that was there when it was opened, even after a package upgrade replaced
// it, so a worker and its children always speak the same frame protocol.
// Copies share the open file; it closes with the last copy.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "daemon/unique_fd.h"
#include "ebats/config.h"
#include "ebats/status.h"

namespace ebats {

class ChildProgram {
 public:
  static constexpr const char* kName = "ebats-worker-child";

  // Looks next to the running executable (a build tree, or a prefix that
  // keeps every program in one folder), then in the folder it is installed
  // to (EBATS_LIBEXEC_DIR, e.g. /usr/libexec/ebats). Fails naming every file
  // it tried.
  static Result<ChildProgram> locate();
  // Opens the executable at `path`. Fails when it is missing or not executable.
  static Result<ChildProgram> open(const std::string& path);

  const std::string& path() const { return path_; }
  // An O_PATH, close-on-exec descriptor of the file; valid while a copy lives.
  int fd() const { return fd_ ? fd_->get() : -1; }

 private:
  ChildProgram(std::string path, std::shared_ptr<UniqueFd> fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  std::shared_ptr<UniqueFd> fd_;
};

// The options ebats-worker-child runs with for `config`: its plugins, the
// largest frame and the longest result message (a worker adds its log options).
std::vector<std::string> child_args(const Config& config);

}  // namespace ebats
