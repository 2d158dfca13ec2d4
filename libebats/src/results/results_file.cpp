#include "results/results_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "supervisor/frame.h"

namespace ebats {
namespace {

// Holds flock(LOCK_EX) on an fd for its lifetime.
class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) < 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Result<ResultsFile> ResultsFile::open(const std::string& path) {
  ResultsFile f;
  f.path_ = path;
  Status s = f.reopen();
  if (!s.ok()) return s;
  return f;
}

Status ResultsFile::reopen() {
  if (path_.empty()) return Status();
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0 && (errno == EACCES || errno == EISDIR || errno == ENXIO)) {
    fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);  // a write-only file or a device
  }
  if (fd < 0) {
    return Status::io("cannot open results file " + path_ + ": " + errno_text() +
                      " (create its folder or fix permissions, or change results.file)");
  }
  fd_.reset(fd);
  return Status();
}

Status ResultsFile::cut_partial_tail(off_t size) {
  // Find the last newline, reading backwards in blocks; everything after it
  // is the remains of a write that never finished.
  std::vector<char> block(64 * 1024);
  off_t end = size;
  while (end > 0) {
    const off_t start = end > static_cast<off_t>(block.size()) ? end - static_cast<off_t>(block.size()) : 0;
    const ssize_t n = ::pread(fd_.get(), block.data(), static_cast<size_t>(end - start), start);
    if (n < 0) return Status::io("cannot read results file " + path_ + ": " + errno_text());
    if (n != end - start) break;  // shrunk meanwhile (truncated by someone): leave it
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (block[static_cast<size_t>(i)] == '\n') {
        if (start + i + 1 == size) return Status();
        if (::ftruncate(fd_.get(), start + i + 1) < 0) {
          return Status::io("cannot cut a partial line off results file " + path_ + ": " + errno_text());
        }
        return Status();
      }
    }
    end = start;
  }
  if (end == 0 && ::ftruncate(fd_.get(), 0) < 0) {
    return Status::io("cannot cut a partial line off results file " + path_ + ": " + errno_text());
  }
  return Status();
}

Status ResultsFile::append(std::string_view lines) {
  if (path_.empty() || lines.empty()) return Status();
  FileLock lock(fd_.get());
  struct stat st {};
  if (::fstat(fd_.get(), &st) < 0) return Status::io("cannot stat results file " + path_ + ": " + errno_text());
  const bool regular = S_ISREG(st.st_mode);
  if (regular && st.st_size > 0) {
    char last = '\n';
    if (::pread(fd_.get(), &last, 1, st.st_size - 1) == 1 && last != '\n') {
      Status cut = cut_partial_tail(st.st_size);
      if (!cut.ok()) return cut;
      if (::fstat(fd_.get(), &st) < 0) return Status::io("cannot stat results file " + path_ + ": " + errno_text());
    }
  }
  if (write_all(fd_.get(), lines)) return Status();
  Status failed = Status::io("cannot write results file " + path_ + ": " + errno_text());
  // What did get written is cut off again: no line is ever left half written.
  if (regular && ::ftruncate(fd_.get(), st.st_size) < 0) {
    return Status::io(failed.message() + "; and cannot cut the partial write off: " + errno_text());
  }
  return failed;
}

}  // namespace ebats
