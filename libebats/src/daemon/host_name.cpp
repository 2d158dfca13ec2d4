#include "daemon/host_name.h"

#include <unistd.h>

namespace ebats {

std::string host_name(const std::string& fallback) {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return fallback;
  return buf;
}

}  // namespace ebats
