// ChildProgram (supervisor/child_program.h): the program worker children run,
// found beside the running executable and held open, so that children started
// after the file was replaced still run the file the worker started with.
#include <poll.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "supervisor/child_process.h"
#include "supervisor/child_program.h"
#include "support/temp_dir.h"

using namespace ebats;
using ebats::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Starts `program` (with its descriptor when `pinned`) and says how it ended.
std::string run_to_end(const ChildProgram& program, bool pinned) {
  sigset_t empty;
  sigemptyset(&empty);
  auto child = ChildProcess::spawn({program.path()}, empty, "", pinned ? program.fd() : -1);
  REQUIRE(child.ok());
  std::string how;
  for (int i = 0; i < 500 && !child->try_reap(&how); ++i) {
    pollfd p{child->pidfd(), POLLIN, 0};
    ::poll(&p, 1, 10);
  }
  return how;
}

}  // namespace

TEST_CASE("child program: the tests' build has ebats-worker-child beside them, and locate() finds it",
          "[supervisor][child]") {
  auto program = ChildProgram::locate();
  REQUIRE(program.ok());
  CHECK(fs::path(program->path()).filename() == ChildProgram::kName);
  CHECK(program->fd() >= 0);
}

TEST_CASE("child program: a missing or non-executable file is refused with its path", "[supervisor][child]") {
  TempDir dir;
  auto missing = ChildProgram::open(dir.path() + "/nothing-here");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.status().message(), Catch::Contains(dir.path() + "/nothing-here"));
  const std::string plain = dir.path() + "/plain";
  fs::copy_file("/bin/true", plain);
  fs::permissions(plain, fs::perms::owner_read | fs::perms::owner_write);
  CHECK_FALSE(ChildProgram::open(plain).ok());  // no x bit at all: not even root may run it
}

TEST_CASE("child program: children started after the file was replaced run the file opened at the start",
          "[supervisor][child]") {
  TempDir dir;
  const std::string path = dir.path() + "/program";
  fs::copy_file("/bin/true", path);
  auto program = ChildProgram::open(path);
  REQUIRE(program.ok());
  CHECK(run_to_end(*program, true) == "exit status 0");
  // A package upgrade: a new file renamed over the old one.
  fs::copy_file("/bin/false", dir.path() + "/program.new");
  fs::rename(dir.path() + "/program.new", path);
  CHECK(run_to_end(*program, true) == "exit status 0");   // still the file opened
  CHECK(run_to_end(*program, false) == "exit status 1");  // by its path: the new one
}
