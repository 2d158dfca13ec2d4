// ScopedEnv: sets (or, with a null value, unsets) an environment variable
// while alive, then restores what was there. Daemons started meanwhile
// inherit it. Tests run one at a time, so no other thread reads the
// environment while it changes.
#pragma once

#include <stdlib.h>

#include <optional>
#include <string>

namespace ebats::test {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace ebats::test
