// Status and Result<T>: errors as values at every module boundary.
//
// A Status is either OK (cheap: no allocation) or a code plus a message that
// says what failed and where. Result<T> holds a T or a non-OK Status.
// Both are value types; a const instance may be read from several threads.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "ebats/export.h"

namespace ebats {

enum class StatusCode {
  ok = 0,
  invalid_argument,  // bad input from a user: config, JSON, CLI arguments
  not_found,         // a named thing (dead letter, task, file) does not exist
  io_error,          // the OS or the database said no
  busy,              // a lock is held by another process (database locked, scheduler running)
  too_large,         // a message exceeds limits.max_message_bytes
  unsupported,       // a version or feature we do not speak
  internal,          // a bug: an invariant did not hold
};

// Short lowercase name of a code, e.g. "invalid argument".
EBATS_EXPORT const char* status_code_name(StatusCode code);

class EBATS_EXPORT Status {
 public:
  Status() = default;  // OK
  static Status ok_status() { return Status(); }
  static Status error(StatusCode code, std::string message) { return Status(code, std::move(message)); }
  static Status invalid(std::string message) { return Status(StatusCode::invalid_argument, std::move(message)); }
  static Status not_found(std::string message) { return Status(StatusCode::not_found, std::move(message)); }
  static Status io(std::string message) { return Status(StatusCode::io_error, std::move(message)); }
  static Status busy(std::string message) { return Status(StatusCode::busy, std::move(message)); }
  static Status internal(std::string message) { return Status(StatusCode::internal, std::move(message)); }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>", or "ok".
  std::string to_string() const;
  // Returns a copy whose message is "<context>: <message>". OK stays OK.
  Status with_context(const std::string& context) const;

 private:
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

// Result<T>: a T on success, otherwise the Status that explains why not.
// REQUIRES: value() only when ok(); constructing from an OK Status is a bug
// (it becomes StatusCode::internal).
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status::internal("Result constructed from an OK status without a value");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace ebats
