// Regression tests for what fuzzing the config loader found (tests/fuzz/fuzz_config.cpp,
// docs/FUZZING.md); each input is also in tests/fuzz/corpus/config/.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "ebats/config.h"

namespace {

// The error text of loading `yaml`, computed in a child process whose address
// space is capped at 1 GiB (not under the sanitizers, which reserve far more),
// so a loader that grows without bound fails this test instead of taking the
// machine's memory. A child that dies returns "child died".
std::string errors_of_capped_load(const std::string& yaml) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    const rlimit cap{rlim_t{1} << 30, rlim_t{1} << 30};
    ::setrlimit(RLIMIT_AS, &cap);
#endif
    const ebats::ConfigLoad load = ebats::load_config_from_string(yaml, "/etc/ebats/t.yaml");
    const std::string text = load.config ? "loaded" : load.error_text();
    const bool written = ::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::_exit(written ? 0 : 1);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "child died";
  return out;
}

}  // namespace

// yaml-cpp 0.7's LoadAll() yields an empty document at the same place forever
// on a leading ',' (jbeder/yaml-cpp#1319); the loader used it and grew until
// memory ran out ("cannot parse the file: std::bad_alloc" at best).
TEST_CASE("fuzz regression: a config starting with ',' is refused as invalid YAML, memory bounded", "[config][regression]") {
  const std::string errors = errors_of_capped_load(",\n");
  CHECK(errors == "/etc/ebats/t.yaml:1:1: error: invalid YAML: unexpected ','");
  const std::string fuzzed = errors_of_capped_load(",ersion: 1\nbroker: {url: \"sqlite:///x.db\"}\nplugins: {dir: p}\n");
  CHECK(fuzzed == "/etc/ebats/t.yaml:1:1: error: invalid YAML: unexpected ','");
}

TEST_CASE("fuzz regression: a second document is still found after the first, where its node starts", "[config][regression]") {
  const std::string errors =
      errors_of_capped_load("broker: {url: \"sqlite:///x.db\"}\nplugins: {dir: p}\n---\nevents: {}\n");
  CHECK(errors == "/etc/ebats/t.yaml:4:1: error: a second YAML document (after ---) would be ignored; keep the "
                  "whole config in one document");
}
