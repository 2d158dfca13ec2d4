// RAII owners for SQLite's C handles, and StatementUse, one use of a prepared
// statement.
//
// DbHandle owns a sqlite3* and closes it; StatementHandle owns a sqlite3_stmt*
// and finalizes it. Both are move-only. A StatementUse binds, steps and reads
// one execution of a statement and resets it (and clears its bindings) when it
// goes out of scope, so a cached statement always starts clean.
// None of these is thread-safe: like the connection, they belong to one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace ebats {
namespace sqlite {

class DbHandle {
 public:
  DbHandle() = default;
  explicit DbHandle(sqlite3* db) : db_(db) {}
  ~DbHandle() { reset(); }
  DbHandle(DbHandle&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  DbHandle& operator=(DbHandle&& other) noexcept {
    if (this != &other) {
      reset();
      db_ = std::exchange(other.db_, nullptr);
    }
    return *this;
  }
  DbHandle(const DbHandle&) = delete;
  DbHandle& operator=(const DbHandle&) = delete;

  sqlite3* get() const { return db_; }
  // Closes the connection now. sqlite3_close_v2 defers the close until every
  // statement is finalized, so the order of destruction cannot leak it.
  void reset() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

class StatementHandle {
 public:
  StatementHandle() = default;
  explicit StatementHandle(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementHandle() { reset(); }
  StatementHandle(StatementHandle&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
  StatementHandle& operator=(StatementHandle&& other) noexcept {
    if (this != &other) {
      reset();
      stmt_ = std::exchange(other.stmt_, nullptr);
    }
    return *this;
  }
  StatementHandle(const StatementHandle&) = delete;
  StatementHandle& operator=(const StatementHandle&) = delete;

  sqlite3_stmt* get() const { return stmt_; }
  void reset() {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// One execution of a prepared statement. Parameters are 1-based, columns
// 0-based, as in SQLite. Text and blobs are bound without copying
// (SQLITE_STATIC): REQUIRES: they outlive this StatementUse.
// A bind error is remembered and returned by the next step().
class StatementUse {
 public:
  explicit StatementUse(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementUse() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;

  StatementUse& bind(int index, int64_t value) {
    remember(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  StatementUse& bind_text(int index, std::string_view value) {
    remember(sqlite3_bind_text64(stmt_, index, value.data() != nullptr ? value.data() : "", value.size(),
                                 SQLITE_STATIC, SQLITE_UTF8));
    return *this;
  }
  StatementUse& bind_blob(int index, std::string_view value) {
    remember(sqlite3_bind_blob64(stmt_, index, value.data() != nullptr ? value.data() : "", value.size(),
                                 SQLITE_STATIC));
    return *this;
  }
  StatementUse& bind_null(int index) {
    remember(sqlite3_bind_null(stmt_, index));
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or an error code (a remembered bind error first).
  int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }

  bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t int_column(int column) const { return sqlite3_column_int64(stmt_, column); }
  // Text or blob bytes of a column ("" for NULL).
  std::string bytes_column(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return std::string();
    return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
  }

 private:
  void remember(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

}  // namespace sqlite
}  // namespace ebats
