#include "broker/sqlite/sqlite_checkpointer.h"

#include <system_error>

namespace ebats {
namespace sqlite {

Result<std::unique_ptr<Checkpointer>> Checkpointer::start(Connection& watched, const SqliteConfig& config,
                                                          int threshold_pages) {
  auto own = Connection::open(watched.path(), config, /*create=*/false);
  if (!own.ok()) return own.status().with_context("opening the checkpoint connection");
  try {
    return std::unique_ptr<Checkpointer>(new Checkpointer(watched, std::move(own).value(), threshold_pages));
  } catch (const std::system_error& e) {  // std::thread could not start one
    return Status::io(std::string("cannot start the checkpoint thread: ") + e.what());
  }
}

Checkpointer::Checkpointer(Connection& watched, std::unique_ptr<Connection> own, int threshold_pages)
    : watched_(watched), own_(std::move(own)), threshold_pages_(threshold_pages), thread_([this] { run(); }) {
  // Hooked only once the thread runs: replaces SQLite's automatic checkpoint.
  sqlite3_wal_hook(watched_.db(), &Checkpointer::on_commit, this);
}

Checkpointer::~Checkpointer() {
  sqlite3_wal_autocheckpoint(watched_.db(), kDefaultThresholdPages);  // unhooks us, restores SQLite's own
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

uint64_t Checkpointer::completed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_;
}

int Checkpointer::on_commit(void* self, sqlite3*, const char*, int wal_pages) {
  auto* checkpointer = static_cast<Checkpointer*>(self);
  if (wal_pages < checkpointer->threshold_pages_) return SQLITE_OK;
  {
    std::lock_guard<std::mutex> lock(checkpointer->mutex_);
    checkpointer->wanted_ = true;
  }
  checkpointer->wake_.notify_one();
  return SQLITE_OK;
}

void Checkpointer::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return wanted_ || stopping_; });
    if (stopping_) return;
    wanted_ = false;
    lock.unlock();
    int wal_frames = 0, copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(own_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
    lock.lock();
    if (rc == SQLITE_OK) ++completed_;
  }
}

}  // namespace sqlite
}  // namespace ebats
