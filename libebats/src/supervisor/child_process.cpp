#include "supervisor/child_process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace ebats {
namespace {

int pidfd_open_compat(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

Result<ChildProcess> ChildProcess::spawn(const ChildProgram& program, const std::vector<std::string>& args,
                                         const sigset_t& child_mask, const std::string& title) {
  std::vector<std::string> argv{program.path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return spawn(argv, child_mask, title, program.fd());
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv, const sigset_t& child_mask,
                                         const std::string& title, int program_fd) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Status::io(std::string("socketpair: ") + std::strerror(errno));
  }
  UniqueFd parent_end(sv[0]), child_end(sv[1]);
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls are allowed (the parent may have threads).
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const char* path = argv.at(0).c_str();
  if (!title.empty()) args[0] = const_cast<char*>(title.c_str());
  const pid_t parent_pid = ::getpid();
  // The daemons ignore stray SIGUSR1, SIGUSR2, SIGALRM and SIGXFSZ; a child (and its
  // plugins) gets them back at their defaults, as an ignored signal would
  // otherwise stay ignored across exec.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;

  pid_t pid = ::fork();
  if (pid < 0) return Status::io(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The program's descriptor moves to 10 or above first: fd 3 is about to
    // become the socket.
    const int program = program_fd >= 0 ? ::fcntl(program_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (program_fd >= 0 && program < 0) ::_exit(126);
    int fd = child_end.get();
    if (fd == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else if (::dup2(fd, 3) < 0) {
      ::_exit(126);
    }
    if (program >= 0) {
      ::close_range(4, static_cast<unsigned>(program) - 1, 0);
      ::close_range(static_cast<unsigned>(program) + 1, ~0U, 0);
    } else {
      ::close_range(4, ~0U, 0);
    }
    ::setpgid(0, 0);  // a process group of its own (the parent sets it too: no race)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent_pid) ::_exit(0);  // the parent died before prctl
    for (int sig : {SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ}) ::sigaction(sig, &default_action, nullptr);
    ::sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    if (program >= 0) {
      ::execveat(program, "", args.data(), environ, AT_EMPTY_PATH);  // close-on-exec is fine for an ELF file
    } else {
      ::execv(path, args.data());
    }
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // EACCES once it has exec'd: it has done it itself then
  ChildProcess c;
  c.pid_ = pid;
  c.pidfd_.reset(pidfd_open_compat(pid));
  if (!c.pidfd_.valid()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    c.reaped_ = true;
    return Status::io(std::string("pidfd_open: ") + std::strerror(errno));
  }
  int flags = ::fcntl(parent_end.get(), F_GETFL);
  ::fcntl(parent_end.get(), F_SETFL, flags | O_NONBLOCK);
  c.sock_ = std::move(parent_end);
  return c;
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::move(o.pidfd_)),
      sock_(std::move(o.sock_)),
      reaped_(std::exchange(o.reaped_, true)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    kill_and_reap();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    sock_ = std::move(o.sock_);
    reaped_ = std::exchange(o.reaped_, true);
  }
  return *this;
}

ChildProcess::~ChildProcess() { kill_and_reap(); }

void ChildProcess::kill_and_reap() {
  if (pid_ > 0 && !reaped_) {
    signal(SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    reaped_ = true;
    kill_leftovers();
  }
}

void ChildProcess::kill_leftovers() const {
  // A process group's id is not reused while the group has members, so this
  // reaches only what the child left behind (nothing: ESRCH).
  if (pid_ > 0) ::kill(-pid_, SIGKILL);
}

bool ChildProcess::signal(int sig) const {
  if (reaped_ || !pidfd_.valid()) return false;
  const bool sent = ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) == 0;
  if (sig == SIGKILL) kill_leftovers();  // still unreaped: the group id is the child's own
  return sent;
}

bool ChildProcess::stop_task(uint64_t seq) const {
  if (reaped_ || !pidfd_.valid()) return false;
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  info.si_signo = SIGUSR1;
  info.si_code = SI_QUEUE;  // a user code: the kernel takes it from another process
  info.si_pid = ::getpid();
  info.si_uid = ::getuid();
  info.si_value.sival_ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(seq));
  return ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGUSR1, &info, 0) == 0;
}

bool ChildProcess::try_reap(std::string* description) {
  if (reaped_) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  reaped_ = true;
  kill_leftovers();
  if (description) {
    if (WIFSIGNALED(status)) {
      *description = "killed by " + signal_name(WTERMSIG(status));
    } else if (WIFEXITED(status)) {
      *description = "exit status " + std::to_string(WEXITSTATUS(status));
    } else {
      *description = "ended";
    }
  }
  return true;
}

}  // namespace ebats
