// ResultsFile: the JSON-lines results sink. One record per line, appended
// with one write(2) per commit group to an O_APPEND fd, so lines of several
// worker processes never interleave. reopen() supports logrotate (SIGHUP).
#pragma once

#include <string>
#include <string_view>

#include "daemon/unique_fd.h"
#include "ebats/status.h"

namespace ebats {

class ResultsFile {
 public:
  // An empty path makes a sink that discards everything.
  static Result<ResultsFile> open(const std::string& path);
  Status append(std::string_view lines);
  Status reopen();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace ebats
