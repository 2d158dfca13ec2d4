// Frames between a worker parent and its children.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "supervisor/frame.h"

using namespace ebats;

TEST_CASE("frames: fields round-trip through a socket, split across reads", "[frame]") {
  std::string out;
  for (int i = 0; i < 3; ++i) {
    FieldWriter w(out, FrameType::run);
    w.u64(100 + i).str("id-" + std::to_string(i)).u32(7).i64(-5).u8(1).str(std::string(70000, 'p'));
    w.finish();
  }
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  // Write in odd-sized pieces from another process so reads see partial frames.
  pid_t pid = ::fork();
  if (pid == 0) {
    for (size_t off = 0; off < out.size(); off += 777) {
      if (!write_all(sv[1], std::string_view(out).substr(off, 777))) ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  FrameBuffer in(1 << 20);
  int seen = 0;
  while (in.read_from(sv[0]) > 0) {
    while (auto f = in.next()) {
      REQUIRE(f->type == FrameType::run);
      FieldReader r(f->payload);
      CHECK(r.u64() == 100u + seen);
      CHECK(r.str() == "id-" + std::to_string(seen));
      CHECK(r.u32() == 7u);
      CHECK(r.i64() == -5);
      CHECK(r.u8() == 1u);
      CHECK(r.str().size() == 70000u);
      CHECK_FALSE(r.failed());
      CHECK(r.str().empty());  // reading past the end...
      CHECK(r.failed());       // ...is flagged, never undefined
      ++seen;
    }
  }
  ::close(sv[0]);
  CHECK(seen == 3);
}

TEST_CASE("frames: a frame longer than the limit marks the stream broken", "[frame]") {
  std::string out;
  FieldWriter w(out, FrameType::result);
  w.str(std::string(2000, 'x'));
  w.finish();
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  REQUIRE(write_all(sv[1], out));
  FrameBuffer in(1000);
  REQUIRE(in.read_from(sv[0]) > 0);
  CHECK_FALSE(in.next().has_value());
  CHECK(in.oversized());
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_CASE("frames: a long stream whose reads end mid-frame keeps every byte in order", "[frame]") {
  // 40 frames of ~70 KB read 777 bytes at a time: the buffer never runs empty,
  // so it moves its unread tail to the front once past 1 MiB, many times.
  std::string out;
  for (int i = 0; i < 40; ++i) {
    FieldWriter w(out, FrameType::result);
    w.u64(i).str(std::string(70000, static_cast<char>('a' + i % 26)));
    w.finish();
  }
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  FrameBuffer in(1 << 20);
  int seen = 0;
  for (size_t off = 0; off < out.size(); off += 777) {
    REQUIRE(write_all(sv[1], std::string_view(out).substr(off, 777)));
    REQUIRE(in.read_from(sv[0]) > 0);
    while (auto f = in.next()) {
      FieldReader r(f->payload);
      CHECK(r.u64() == static_cast<uint64_t>(seen));
      CHECK(r.str() == std::string(70000, static_cast<char>('a' + seen % 26)));
      CHECK_FALSE(r.failed());
      ++seen;
    }
  }
  CHECK(seen == 40);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_CASE("frames: READY carries each plugin's version, ABI and file, and one without them still reads", "[frame]") {
  ReadyReport sent;
  sent.tasks = {"a", "b"};
  sent.errors = {"x.so: refused"};
  sent.plugins = {"shop", "mail"};
  sent.versions = {"1.2.0", "0.1.0"};
  sent.abis = {"1.0", "1.1"};
  sent.files = {"/p/shop.so", "/p/mail.so"};
  std::string out;
  write_ready_frame(out, sent);
  ReadyReport got;
  REQUIRE(read_ready_payload(std::string_view(out).substr(5), &got));  // after the length and the type
  CHECK(got.tasks == sent.tasks);
  CHECK(got.errors == sent.errors);
  CHECK(got.plugins == sent.plugins);
  CHECK(got.versions == sent.versions);
  CHECK(got.abis == sent.abis);
  CHECK(got.files == sent.files);

  // A child built before the versions: the three lists stay empty.
  ReadyReport old_report = sent;
  old_report.versions.clear();
  old_report.abis.clear();
  old_report.files.clear();
  std::string old_frame;
  write_ready_frame(old_frame, old_report);
  const size_t empty_lists = 3 * 4;  // three u32 counts of 0
  const std::string_view old_payload = std::string_view(old_frame).substr(5, old_frame.size() - 5 - empty_lists);
  ReadyReport read_old;
  REQUIRE(read_ready_payload(old_payload, &read_old));
  CHECK(read_old.plugins == sent.plugins);
  CHECK(read_old.versions.empty());
  // A truncated list is still an error.
  CHECK_FALSE(read_ready_payload(std::string_view(out).substr(5, out.size() - 7), &read_old));
}
