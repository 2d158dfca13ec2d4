// ResultsFile: whole lines or nothing, on a full disk (RLIMIT_FSIZE here,
// which fails a write past the limit with EFBIG exactly as a full disk fails
// it with ENOSPC) and after a writer killed mid-line.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "results/results_file.h"
#include "support/temp_dir.h"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string lines(char c, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += "{\"n\":\"" + std::string(20, c) + "\"}\n";
  return out;
}

// Lowers the soft RLIMIT_FSIZE (SIGXFSZ ignored, as the daemons do) for its
// lifetime; the write that crosses it is cut short, the next fails.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace

TEST_CASE("a results write that fails part-way leaves only the whole lines before it", "[results]") {
  ebats::test::TempDir dir;
  const std::string path = dir.file("results.jsonl");
  auto file = ebats::ResultsFile::open(path);
  REQUIRE(file.ok());
  const std::string first = lines('a', 4);
  REQUIRE(file->append(first).ok());
  const std::string second = lines('b', 40);
  {
    FileSizeLimit limit(first.size() + second.size() / 2);  // the write gets half way
    const ebats::Status s = file->append(second);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.message(), Catch::Contains(path));
    CHECK(read_all(path) == first);
  }
  REQUIRE(file->append(second).ok());  // room again: all of it
  CHECK(read_all(path) == first + second);
}

TEST_CASE("a line left half written by a killed writer is cut off before the next append", "[results]") {
  ebats::test::TempDir dir;
  const std::string whole = lines('a', 3);
  const std::string path = dir.write("results.jsonl", whole + "{\"n\":\"cut sh");
  auto file = ebats::ResultsFile::open(path);
  REQUIRE(file.ok());
  const std::string next = lines('c', 2);
  REQUIRE(file->append(next).ok());
  CHECK(read_all(path) == whole + next);

  const std::string only_partial = dir.write("partial.jsonl", "{\"n\":");
  auto other = ebats::ResultsFile::open(only_partial);
  REQUIRE(other.ok());
  REQUIRE(other->append(next).ok());
  CHECK(read_all(only_partial) == next);
}

TEST_CASE("a results file on a device that is full fails with the path, and a reopen picks up a new file",
          "[results]") {
  ebats::test::TempDir dir;
  const std::string path = dir.file("results.jsonl");
  REQUIRE(::symlink("/dev/full", path.c_str()) == 0);
  auto file = ebats::ResultsFile::open(path);
  REQUIRE(file.ok());
  const ebats::Status s = file->append(lines('a', 1));
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.message(), Catch::Contains("cannot write results file " + path));
  REQUIRE(::unlink(path.c_str()) == 0);
  REQUIRE(file->reopen().ok());
  REQUIRE(file->append(lines('a', 1)).ok());
  CHECK(read_all(path) == lines('a', 1));
}
