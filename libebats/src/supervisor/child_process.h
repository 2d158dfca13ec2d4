// ChildProcess: one worker child, started with fork() + exec and owned
// through a pidfd (no PID-reuse race) and its end of a socketpair.
//
// The child gets its socket as fd 3, every other fd above 2 closed, the
// signal mask given, and PR_SET_PDEATHSIG = SIGKILL, so it never outlives
// the parent. It leads a process group of its own: whatever it forks (a
// handler's subprocess) is killed with it, when it is killed and once it is
// reaped. Only async-signal-safe calls run between fork() and exec.
// Move-only; the destructor kills (SIGKILL) and reaps a child still running.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/unique_fd.h"
#include "supervisor/child_program.h"
#include "ebats/status.h"

namespace ebats {

class ChildProcess {
 public:
  // argv[0] is the program to exec; `title`, when not empty, is the argv[0]
  // the child gets instead (what `ps` shows). With `program_fd` (an open
  // descriptor of the executable, ChildProgram::fd()) the child execs that
  // file, whatever argv[0]'s path names by now.
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv, const sigset_t& child_mask,
                                    const std::string& title = "", int program_fd = -1);
  // Starts `program` (from its open descriptor) with `args` after argv[0].
  static Result<ChildProcess> spawn(const ChildProgram& program, const std::vector<std::string>& args,
                                    const sigset_t& child_mask, const std::string& title);

  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  int socket() const { return sock_.get(); }
  void close_socket() { sock_.reset(); }
  // Ends what the parent sends (shutdown(SHUT_WR)): the child reads EOF,
  // finishes, calls its plugins' shutdown and exits; its results still come.
  void end_input() { ::shutdown(sock_.get(), SHUT_WR); }
  // Sends a signal through the pidfd; false if the child is already gone.
  // SIGKILL goes to the child's whole process group.
  bool signal(int sig) const;
  // The soft stop of the task the parent numbered `seq`: SIGUSR1 queued with
  // `seq` as its value (si_code SI_QUEUE), so a child that already went on
  // to its next task can tell it is not meant for that one (worker_child.cpp).
  bool stop_task(uint64_t seq) const;
  // Reaps the child if it has exited (non-blocking). Returns true once reaped;
  // `description` then says how it ended: "exit status 3", "killed by SIGSEGV".
  bool try_reap(std::string* description);
  bool reaped() const { return reaped_; }

 private:
  ChildProcess() = default;
  void kill_and_reap();
  // SIGKILL to the child's process group: what it forked and left running.
  void kill_leftovers() const;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd sock_;
  bool reaped_ = false;
};

// "SIGSEGV" for 11, "signal 64" when unnamed.
std::string signal_name(int sig);

}  // namespace ebats
