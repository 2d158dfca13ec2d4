#include "ebats/clock.h"

namespace ebats {

WallMs SystemClock::wall_now() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

int64_t SystemClock::wall_now_us() const {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

SteadyTime SystemClock::steady_now() const { return std::chrono::steady_clock::now(); }

}  // namespace ebats
