// ResultsFile: the JSON-lines results sink. One record per line.
//
// Contract: the file only ever holds whole lines. append() writes its lines
// with one write(2) to an O_APPEND fd under an exclusive flock(2), which every
// ebats process writing the same file takes too; a write that fails part-way
// (a full disk, EFBIG past RLIMIT_FSIZE) is cut back off before the lock is
// released, so the call either adds every line or none. A tail without its
// newline (a writer SIGKILLed mid-write) is cut off before the next append.
// reopen() opens the path again: for logrotate (SIGHUP), and before a retry
// after a failure, so a file replaced meanwhile is the one written.
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
  // All of `lines` (whole lines, each ending in '\n') or nothing.
  Status append(std::string_view lines);
  Status reopen();
  const std::string& path() const { return path_; }

 private:
  Status cut_partial_tail(off_t size);
  std::string path_;
  UniqueFd fd_;
};

}  // namespace ebats
