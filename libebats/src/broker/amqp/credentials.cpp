#include "broker/amqp/credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "daemon/unique_fd.h"

namespace ebats {
namespace amqp {

Result<std::string> read_password(const std::string& password_file) {
  if (password_file.empty()) {
    const char* env = std::getenv(kPasswordVariable);
    return std::string(env ? env : "");
  }
  // O_NONBLOCK: a FIFO named here must be refused below, not wait for a writer.
  UniqueFd fd(::open(password_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    const int error = errno;
    struct stat link {};
    if (error == ELOOP && ::lstat(password_file.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
      return Status::invalid("broker.password_file " + password_file +
                             " is a symbolic link; name the file it points to instead");
    }
    return Status::invalid("cannot open broker.password_file " + password_file + ": " + std::strerror(error));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::invalid("broker.password_file " + password_file + " is not a regular file");
  }
  if ((st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::invalid("broker.password_file " + password_file + " has mode " + mode +
                           ": others may read or change it; run chmod 0600 (or 0640 for the group) on it");
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::invalid("cannot read broker.password_file " + password_file + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > 65536) return Status::invalid("broker.password_file " + password_file + " is too long");
  }
  const size_t end = text.find_first_of("\r\n");
  if (end != std::string::npos) text.resize(end);
  if (text.empty()) return Status::invalid("broker.password_file " + password_file + " is empty");
  return text;
}

}  // namespace amqp
}  // namespace ebats
