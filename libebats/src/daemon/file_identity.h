// FileIdentity: which file a path named when a daemon opened it (device and
// inode), so the daemon can notice the file deleted or replaced under it. A
// daemon keeps using an unlinked SQLite database, and every process that opens
// the path afterwards (a producer, a restarted peer) gets a new, empty one
// that the daemon never reads: so the daemons stop instead, with a message.
#pragma once

#include <sys/types.h>

#include <string>

#include "ebats/status.h"

namespace ebats {

class FileIdentity {
 public:
  // The identity of `path` now; an error when it cannot be stat()ed.
  static Result<FileIdentity> of(const std::string& path);
  // OK while `path` still names the same file; else an io_error saying it was
  // deleted or replaced, and what to do.
  Status unchanged() const;

 private:
  FileIdentity(std::string path, dev_t device, ino_t inode) : path_(std::move(path)), device_(device), inode_(inode) {}
  std::string path_;
  dev_t device_;
  ino_t inode_;
};

}  // namespace ebats
