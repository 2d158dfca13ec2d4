#include "ebats/broker.h"

namespace ebats {

const char* lane_name(Lane lane) {
  switch (lane) {
    case Lane::events: return "events";
    case Lane::ntask: return "ntask";
    case Lane::dtask: return "dtask";
    case Lane::source: return "source";
  }
  return "unknown";
}

}  // namespace ebats
