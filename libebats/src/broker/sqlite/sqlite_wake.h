// Wake-ups for daemons on the SQLite broker: a commit that adds work for a
// (lane, topic) tells the daemons waiting for it at once, instead of leaving
// them to find it at their next poll (docs/ARCHITECTURE.md, "Wake-ups").
//
// Every waiting daemon binds a Unix datagram socket in the wake folder next
// to the database, `<database>.wake/`, named `<lane>.<topic>.<pid>` (events:
// `events.<pid>`). A committer sends a one-byte datagram to each socket of the
// lanes and topics it wrote, after the commit, without blocking: a full
// socket is a daemon already woken, a refused one the leftover of a daemon
// that died (it is removed). The datagram carries nothing: the woken daemon
// reads the table as it would at a poll, so a lost or extra wake-up only
// costs a poll's latency or a look. Polling stays as the safety net.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "daemon/unique_fd.h"
#include "ebats/broker.h"
#include "ebats/status.h"

namespace ebats::sqlite {

// "<database path>.wake": the folder of the database's wake sockets.
std::string wake_folder_of(const std::string& database_path);

// One daemon's socket, bound for the (lane, topic) pairs it subscribed to
// (one socket; a name per pair). Removes its names when destroyed.
class WakeListener {
 public:
  // Creates the folder if needed (modes follow the database file's, so that
  // whoever may write the database may wake its daemons). Fails when the
  // folder cannot be written or a name is longer than a socket path allows.
  static Result<WakeListener> open(const std::string& database_path);
  WakeListener() = default;
  WakeListener(WakeListener&& other) noexcept;
  WakeListener& operator=(WakeListener&& other) noexcept;
  WakeListener(const WakeListener&) = delete;
  WakeListener& operator=(const WakeListener&) = delete;
  ~WakeListener();

  // Adds the name of (lane, topic) to the socket.
  Status listen(Lane lane, const std::string& topic);
  // Readable (level-triggered) once a datagram came; -1 before open().
  int fd() const { return fd_.get(); }
  // Reads every datagram waiting. Call before looking at the table, so that
  // a wake-up for a commit made during the look is not lost. Thread-safe.
  void drain() const;

 private:
  UniqueFd fd_;
  std::string folder_;
  mode_t mode_ = 0600;
  std::vector<std::string> paths_;  // the first is bound, the others are links to it
};

// Wakes every daemon listening for one of `targets` in the wake folder of
// `database_path`. Never blocks; failures are ignored (polling covers them).
// Keeps the folder's listing between calls while the folder is unchanged.
class WakeSender {
 public:
  explicit WakeSender(std::string database_path);
  void wake(std::vector<std::pair<Lane, std::string>> targets);

 private:
  void refresh();

  std::string folder_;
  UniqueFd socket_;
  timespec listed_mtime_{};          // the folder's mtime when names_ was read
  bool listed_ = false;
  std::vector<std::string> names_;   // socket names in the folder
};

}  // namespace ebats::sqlite
