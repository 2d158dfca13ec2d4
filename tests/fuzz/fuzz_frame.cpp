// libFuzzer target: FrameBuffer, the decoder of the frames a worker parent
// and its children exchange (libebats/src/supervisor/frame.h), and the READY
// and SETTINGS payload readers.
//
// Input: byte 0-1 pick the frame limit (1..65536), byte 2 the size of the
// pieces the stream arrives in through a pipe (1..~16 KiB), the rest is the
// stream. Beyond "no crash, no sanitizer report":
//  - FrameBuffer yields exactly the frames a plain reading of the whole
//    stream finds, whatever the pieces: same types, same payloads, in order;
//  - no frame is longer than the limit, and oversized() is set exactly when
//    the next length is 0 or over the limit;
//  - a READY payload that reads back re-encodes to a prefix of itself (the
//    reader ignores a tail); a SETTINGS payload that reads back re-encodes to
//    one that reads back the same.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "supervisor/frame.h"

namespace {

struct Expected {
  std::vector<std::pair<uint8_t, std::string_view>> frames;
  bool oversized = false;
};

// The reference: frames read straight from the whole stream.
Expected read_all(std::string_view s, size_t max_frame) {
  Expected out;
  while (s.size() >= 5) {
    uint32_t len;
    std::memcpy(&len, s.data(), 4);
    if (len < 1 || len > max_frame) {
      out.oversized = true;
      break;
    }
    if (s.size() < 4 + static_cast<size_t>(len)) break;
    out.frames.emplace_back(static_cast<uint8_t>(s[4]), s.substr(5, len - 1));
    s.remove_prefix(4 + static_cast<size_t>(len));
  }
  return out;
}

class Pipe {
 public:
  Pipe() { FUZZ_CHECK(::pipe2(fds_, O_CLOEXEC) == 0); }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }

 private:
  int fds_[2];
};

void check_payload(ebats::FrameType type, std::string_view payload) {
  if (type == ebats::FrameType::ready) {
    ebats::ReadyReport report;
    if (!ebats::read_ready_payload(payload, &report)) return;
    // Re-encoded, it decodes to the same report (a payload from an older child
    // lacks the trailing lists; they come back empty, as they were read).
    std::string again;
    ebats::write_ready_frame(again, report);
    ebats::ReadyReport report_again;
    FUZZ_CHECK(ebats::read_ready_payload(std::string_view(again).substr(5), &report_again));
    FUZZ_CHECK(report_again.tasks == report.tasks && report_again.errors == report.errors &&
               report_again.plugins == report.plugins && report_again.versions == report.versions &&
               report_again.abis == report.abis && report_again.files == report.files);
  } else if (type == ebats::FrameType::settings) {
    ebats::PluginSettings settings;
    if (!ebats::read_settings_payload(payload, &settings)) return;
    std::string again;
    ebats::write_settings_frame(again, settings);
    ebats::PluginSettings settings_again;
    FUZZ_CHECK(ebats::read_settings_payload(std::string_view(again).substr(5), &settings_again));
    FUZZ_CHECK(settings_again == settings);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const size_t max_frame = 1 + (static_cast<size_t>(data[0]) | static_cast<size_t>(data[1]) << 8);
  const size_t piece = 1 + static_cast<size_t>(data[2]) * data[2] / 4;  // 1 .. 16257, under a pipe's 64 KiB
  const std::string_view stream(reinterpret_cast<const char*>(data) + 3, size - 3);
  const Expected expected = read_all(stream, max_frame);

  Pipe pipe;
  ebats::FrameBuffer buffer(max_frame);
  size_t seen = 0;
  for (size_t off = 0; off < stream.size() && !buffer.oversized(); off += piece) {
    const std::string_view chunk = stream.substr(off, piece);
    FUZZ_CHECK(ebats::write_all(pipe.write_end(), chunk));
    FUZZ_CHECK(buffer.read_from(pipe.read_end()) == static_cast<ssize_t>(chunk.size()));
    while (const auto frame = buffer.next()) {
      FUZZ_CHECK(frame->payload.size() + 1 <= max_frame);
      FUZZ_CHECK(seen < expected.frames.size());
      FUZZ_CHECK(static_cast<uint8_t>(frame->type) == expected.frames[seen].first);
      FUZZ_CHECK(frame->payload == expected.frames[seen].second);
      check_payload(frame->type, frame->payload);
      ++seen;
    }
  }
  FUZZ_CHECK(seen == expected.frames.size());
  FUZZ_CHECK(buffer.oversized() == expected.oversized);
  return 0;
}
