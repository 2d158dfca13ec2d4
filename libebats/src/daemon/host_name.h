// host_name(): this machine's name, as result records, logs and lease owners
// carry it; `fallback` when gethostname(2) fails.
#pragma once

#include <string>

namespace ebats {

std::string host_name(const std::string& fallback = "localhost");

}  // namespace ebats
