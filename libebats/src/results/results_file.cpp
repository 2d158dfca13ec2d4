#include "results/results_file.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "supervisor/frame.h"

namespace ebats {

Result<ResultsFile> ResultsFile::open(const std::string& path) {
  ResultsFile f;
  f.path_ = path;
  Status s = f.reopen();
  if (!s.ok()) return s;
  return f;
}

Status ResultsFile::reopen() {
  if (path_.empty()) return Status();
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return Status::io("cannot open results file " + path_ + ": " + std::strerror(errno) +
                      " (create its folder or fix permissions, or change results.file)");
  }
  fd_.reset(fd);
  return Status();
}

Status ResultsFile::append(std::string_view lines) {
  if (path_.empty() || lines.empty()) return Status();
  if (!write_all(fd_.get(), lines)) {
    return Status::io("cannot write results file " + path_ + ": " + std::strerror(errno));
  }
  return Status();
}

}  // namespace ebats
