// Frames between a worker parent and its child processes.
//
// On a SOCK_STREAM socketpair every frame is `u32 length (LE) | u8 type |
// payload`, length counting type + payload. Payloads are a flat sequence of
// fields written by FieldWriter and read back in the same order by
// FieldReader: integers little-endian, strings as u32 length + bytes. Binary,
// not JSON, so the hot path never re-parses the envelope.
//
//   SETTINGS P->C u32 n, n x (str plugin, str settings JSON): the first
//                frame of every child, read before it loads the plugins (not
//                on the command line: settings may hold secrets)
//   READY  C->P  u32 n_tasks, n x str task, u32 n_errors, n x str error,
//                u32 n_plugins, n x str plugin (the names of those loaded),
//                then, of each plugin, u32 n + n x str version, u32 n + n x
//                str ABI ("1.0"), u32 n + n x str file (absent from older children)
//   RUN    P->C  u64 seq, str id, str name, str topic, str trace, str params,
//                u32 attempt, u32 max_attempts, i64 timeout_ms (the child
//                sets the deadline when it starts the task: one queued behind
//                a slow task still gets its whole timeout)
//   RESULT C->P  u64 seq, u8 outcome, u8 has_retry_after, i64 retry_after_ms,
//                u8 has_retry_limit, u32 retry_limit, i64 started_at,
//                i64 finished_at, i64 duration_us, str message
// The parent shuts a child down by closing its end of the socket.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/config.h"

namespace ebats {

enum class FrameType : uint8_t { ready = 1, run = 2, result = 3, settings = 4 };

class FieldWriter {
 public:
  // Starts a frame of `type` at the end of `out`; finish() patches its length.
  FieldWriter(std::string& out, FrameType type);
  FieldWriter& u8(uint8_t v) { return raw(&v, 1); }
  FieldWriter& u32(uint32_t v) { return raw(&v, 4); }
  FieldWriter& u64(uint64_t v) { return raw(&v, 8); }
  FieldWriter& i64(int64_t v) { return raw(&v, 8); }
  FieldWriter& str(std::string_view s);
  void finish();

 private:
  FieldWriter& raw(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);  // x86-64 and aarch64 are little-endian
    return *this;
  }
  std::string& out_;
  size_t start_;
};

// Reads fields of one frame payload; any read past the end sets failed().
class FieldReader {
 public:
  explicit FieldReader(std::string_view payload) : p_(payload) {}
  uint8_t u8() { return num<uint8_t>(); }
  uint32_t u32() { return num<uint32_t>(); }
  uint64_t u64() { return num<uint64_t>(); }
  int64_t i64() { return num<int64_t>(); }
  std::string_view str();
  bool failed() const { return failed_; }
  bool at_end() const { return p_.empty(); }

 private:
  template <class T>
  T num() {
    T v{};
    if (p_.size() < sizeof(T)) {
      failed_ = true;
      return v;
    }
    std::memcpy(&v, p_.data(), sizeof(T));
    p_.remove_prefix(sizeof(T));
    return v;
  }
  std::string_view p_;
  bool failed_ = false;
};

// The largest frame between a worker and its child: a message of
// limits.max_message_bytes plus this much for the other fields of a frame.
constexpr uint64_t kFrameMarginBytes = 65536;
inline uint64_t max_frame_bytes(uint64_t max_message_bytes) { return max_message_bytes + kFrameMarginBytes; }

// Accumulates bytes read from a stream and yields complete frames.
class FrameBuffer {
 public:
  explicit FrameBuffer(size_t max_frame) : max_frame_(max_frame) {}
  // At most this many bytes per read_from(): fewer means the socket had no
  // more at that moment, and a poll, not another read, finds what follows.
  // 64 KiB holds some 300 result frames or 200 task frames; the buffer is
  // that size (zero-filled, so resident) in the worker for each child and in
  // each child, and a larger one (256 KiB until 2026-12-08) bought nothing
  // measurable but memory (bench/notes.md).
  static constexpr size_t kReadChunk = 64 * 1024;
  // Reads what is available from `fd` (non-blocking or blocking once).
  // Returns bytes read, 0 at EOF, -1 on error (errno set; EAGAIN = nothing now).
  ssize_t read_from(int fd);
  struct Frame {
    FrameType type;
    std::string_view payload;  // valid until the next read_from() / next()
  };
  // The next complete frame, if any. Sets oversized() and returns nothing on
  // a frame longer than max_frame (the peer is broken).
  std::optional<Frame> next();
  bool oversized() const { return oversized_; }

 private:
  // Bytes [pos_, end_) of buf_ are unread; buf_.size() is the capacity, so a
  // read never zero-fills (resizing a string would, at every call).
  std::string buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  size_t max_frame_;
  bool oversized_ = false;
};

// Writes all of `data` to a blocking fd, retrying on EINTR. false on error.
bool write_all(int fd, std::string_view data);

// The READY payload: what a child loaded.
struct ReadyReport {
  std::vector<std::string> tasks;    // sorted task names
  std::vector<std::string> errors;   // refusals, one complete message each
  std::vector<std::string> plugins;  // names of the plugins loaded
  // Of each plugin, in the order of `plugins` (ebatsctl plugins): its version,
  // the ABI it was built against ("1.0") and its file. Empty from a child
  // that predates them.
  std::vector<std::string> versions;
  std::vector<std::string> abis;
  std::vector<std::string> files;
};
// Appends a READY frame to `out`.
void write_ready_frame(std::string& out, const ReadyReport& report);
// Reads a READY payload; false if it is malformed (*report holds what was read).
bool read_ready_payload(std::string_view payload, ReadyReport* report);

// Appends a SETTINGS frame to `out`.
void write_settings_frame(std::string& out, const PluginSettings& settings);
// Reads a SETTINGS payload; false if it is malformed.
bool read_settings_payload(std::string_view payload, PluginSettings* settings);

}  // namespace ebats
