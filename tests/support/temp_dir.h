// TempDir: a fresh folder under /tmp (mkdtemp, mode 0700) for one test,
// removed with everything in it when the TempDir goes out of scope. Its
// permissions are restored first, so a test may chmod it.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

namespace ebats {
namespace test {

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/ebats-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ignored);
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to file(name), creating the folders on the way; returns the path.
  std::string write(const std::string& name, const std::string& text) const {
    const std::string p = file(name);
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }

 private:
  std::string path_;
};

}  // namespace test
}  // namespace ebats
