#include "broker/sqlite/sqlite_wake.h"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ebats::sqlite {
namespace {

// The longest path a socket address holds: sun_path less its terminating NUL.
constexpr size_t kMaxWakePathBytes = sizeof(sockaddr_un::sun_path) - 1;

// "<lane>.<topic>." (events: "events."): a socket's name is this and a pid.
std::string name_prefix(Lane lane, const std::string& topic) {
  std::string prefix = lane_name(lane);
  prefix += '.';
  if (lane != Lane::events && !topic.empty()) prefix += topic + '.';
  return prefix;
}

bool is_pid_suffix(const std::string& name, size_t from) {
  return from < name.size() &&
         std::all_of(name.begin() + static_cast<std::ptrdiff_t>(from), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The address of `path`, or false when it does not fit a sockaddr_un.
bool address_of(const std::string& path, sockaddr_un* out) {
  std::memset(out, 0, sizeof *out);
  out->sun_family = AF_UNIX;
  if (path.size() > kMaxWakePathBytes) return false;
  std::memcpy(out->sun_path, path.data(), path.size());
  return true;
}

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string wake_folder_of(const std::string& database_path) { return database_path + ".wake"; }

Result<WakeListener> WakeListener::open(const std::string& database_path) {
  WakeListener listener;
  listener.folder_ = wake_folder_of(database_path);
  struct stat db {};
  if (::stat(database_path.c_str(), &db) != 0) return Status::io(errno_text("cannot stat", database_path));
  listener.mode_ = db.st_mode & 0666;
  // Search permission wherever the database is readable.
  const mode_t folder_mode = listener.mode_ | ((listener.mode_ & 0444) >> 2);
  if (::mkdir(listener.folder_.c_str(), folder_mode) == 0) {
    ::chmod(listener.folder_.c_str(), folder_mode);  // past the umask
  } else if (errno != EEXIST) {
    return Status::io(errno_text("cannot create the wake folder", listener.folder_));
  }
  listener.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listener.fd_.get() < 0) return Status::io(std::string("socket(AF_UNIX): ") + std::strerror(errno));
  return listener;
}

WakeListener::WakeListener(WakeListener&& other) noexcept
    : fd_(std::move(other.fd_)),
      folder_(std::move(other.folder_)),
      mode_(other.mode_),
      paths_(std::exchange(other.paths_, {})) {}

WakeListener& WakeListener::operator=(WakeListener&& other) noexcept {
  if (this != &other) {
    for (const std::string& path : paths_) ::unlink(path.c_str());
    fd_ = std::move(other.fd_);
    folder_ = std::move(other.folder_);
    mode_ = other.mode_;
    paths_ = std::exchange(other.paths_, {});
  }
  return *this;
}

WakeListener::~WakeListener() {
  for (const std::string& path : paths_) ::unlink(path.c_str());
}

Status WakeListener::listen(Lane lane, const std::string& topic) {
  if (fd_.get() < 0) return Status::internal("wake listener not open");
  const std::string path = folder_ + "/" + name_prefix(lane, topic) + std::to_string(::getpid());
  if (std::find(paths_.begin(), paths_.end(), path) != paths_.end()) return Status();
  sockaddr_un address;
  if (!address_of(path, &address)) {
    return Status::invalid("the wake socket path " + path + " is longer than " + std::to_string(kMaxWakePathBytes) +
                           " bytes");
  }
  // A name with this pid is a leftover of a process that had it before.
  ::unlink(path.c_str());
  if (paths_.empty()) {
    if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      return Status::io(errno_text("cannot bind the wake socket", path));
    }
  } else if (::link(paths_.front().c_str(), path.c_str()) != 0) {
    return Status::io(errno_text("cannot link the wake socket", path));
  }
  ::chmod(path.c_str(), mode_);
  paths_.push_back(path);
  return Status();
}

void WakeListener::drain() const {
  char byte;
  while (fd_.get() >= 0 && ::recv(fd_.get(), &byte, sizeof byte, MSG_DONTWAIT) >= 0) {
  }
}

WakeSender::WakeSender(std::string database_path)
    : folder_(wake_folder_of(database_path)),
      socket_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {}

void WakeSender::refresh() {
  struct stat folder {};
  if (::stat(folder_.c_str(), &folder) != 0) {
    names_.clear();
    listed_ = false;
    return;
  }
  if (listed_ && folder.st_mtim.tv_sec == listed_mtime_.tv_sec && folder.st_mtim.tv_nsec == listed_mtime_.tv_nsec) {
    return;  // no name came or went
  }
  names_.clear();
  DIR* dir = ::opendir(folder_.c_str());
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') names_.emplace_back(entry->d_name);
  }
  ::closedir(dir);
  listed_mtime_ = folder.st_mtim;
  listed_ = true;
}

void WakeSender::wake(std::vector<std::pair<Lane, std::string>> targets) {
  if (socket_.get() < 0 || targets.empty()) return;
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  refresh();
  for (const std::string& name : names_) {
    const bool wanted = std::any_of(targets.begin(), targets.end(), [&](const auto& target) {
      const std::string prefix = name_prefix(target.first, target.second);
      return name.compare(0, prefix.size(), prefix) == 0 && is_pid_suffix(name, prefix.size());
    });
    if (!wanted) continue;
    const std::string path = folder_ + "/" + name;
    sockaddr_un address;
    if (!address_of(path, &address)) continue;
    // Only a failed send says anything about errno (a successful one returns
    // 1 and leaves the errno of an earlier failure in place).
    if (::sendto(socket_.get(), "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address),
                 sizeof address) < 0 &&
        errno == ECONNREFUSED) {
      ::unlink(path.c_str());  // its daemon died without removing it
    }
  }
}

}  // namespace ebats::sqlite
