// ChildProgram (supervisor/child_program.h): the program worker children run,
// found beside the running executable and held open, so that children started
// after the file was replaced still run the file the worker started with.
#include <elf.h>
#include <poll.h>
#include <signal.h>

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

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

// Runs `program` with `args` (shell words), stdin closed; its exit code and
// what it wrote on stdout and stderr.
std::pair<int, std::string> run_with(const ChildProgram& program, const std::string& args) {
  FILE* pipe = ::popen((program.path() + " " + args + " </dev/null 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  REQUIRE(WIFEXITED(status));
  return {WEXITSTATUS(status), out};
}

// The DT_NEEDED entries of a 64-bit ELF file: the shared libraries it names.
std::vector<std::string> needed_libraries(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(image.size() >= sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  REQUIRE(std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0);
  REQUIRE(eh.e_ident[EI_CLASS] == ELFCLASS64);
  auto section = [&](size_t i) {
    Elf64_Shdr sh;
    REQUIRE(eh.e_shoff + (i + 1) * sizeof sh <= image.size());
    std::memcpy(&sh, image.data() + eh.e_shoff + i * sizeof sh, sizeof sh);
    return sh;
  };
  std::vector<std::string> names;
  for (size_t i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr dynamic = section(i);
    if (dynamic.sh_type != SHT_DYNAMIC) continue;
    const Elf64_Shdr strings = section(dynamic.sh_link);
    REQUIRE(dynamic.sh_offset + dynamic.sh_size <= image.size());
    for (size_t off = 0; off + sizeof(Elf64_Dyn) <= dynamic.sh_size; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn entry;
      std::memcpy(&entry, image.data() + dynamic.sh_offset + off, sizeof entry);
      if (entry.d_tag == DT_NULL) break;
      if (entry.d_tag != DT_NEEDED) continue;
      REQUIRE(strings.sh_offset + entry.d_un.d_val < image.size());
      names.emplace_back(image.c_str() + strings.sh_offset + entry.d_un.d_val);
    }
  }
  return names;
}

}  // namespace

TEST_CASE("child program: ebats-worker-child links none of the daemons' broker, config or systemd libraries",
          "[supervisor][child]") {
  // It links the static core with --as-needed: a dependency that crept into
  // the child's objects would bring these back quietly, and with them the
  // child's start-up time and memory (docs/ARCHITECTURE.md).
  auto program = ChildProgram::locate();
  REQUIRE(program.ok());
  const std::vector<std::string> needed = needed_libraries(program->path());
  CHECK_FALSE(needed.empty());  // it is a dynamic executable: libc at least
  for (const std::string& name : needed) {
    INFO(name);
    for (const char* banned :
         {"libsqlite3", "librabbitmq", "libssl", "libcrypto", "libsystemd", "libyaml-cpp", "libboost_program_options"}) {
      CHECK(name.rfind(banned, 0) != 0);
    }
  }
}

TEST_CASE("child program: ebats-worker-child reads its options and refuses bad ones with exit code 2",
          "[supervisor][child]") {
  auto program = ChildProgram::locate();
  REQUIRE(program.ok());
  auto [help_code, help] = run_with(*program, "--help");
  CHECK(help_code == 0);
  for (const char* option : {"--plugins-dir", "--max-frame", "--message-limit", "--log-level", "--log-format", "--log-name"}) {
    CHECK_THAT(help, Catch::Contains(option));
  }
  struct Refused {
    const char* args;
    const char* says;
  };
  for (const Refused& bad : {Refused{"", "--plugins-dir is required"},
                             Refused{"--plugins-dir /tmp --max-frame 12x", "--max-frame takes a number of bytes, not '12x'"},
                             Refused{"--plugins-dir /tmp --colour", "unknown option '--colour'"},
                             Refused{"--plugins-dir", "--plugins-dir needs a value"},
                             Refused{"--plugins-dir=/tmp --log-level loud", "--log-level takes debug, info, warn or error"},
                             Refused{"--plugins-dir /tmp extra", "unexpected argument 'extra'"}}) {
    INFO(bad.args);
    auto [code, said] = run_with(*program, bad.args);
    CHECK(code == 2);
    CHECK_THAT(said, Catch::Contains(bad.says));
  }
}

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
