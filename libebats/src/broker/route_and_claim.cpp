// Broker::route_and_claim(): the two calls in turn, for a backend that has
// no single commit for both (RabbitMQ). broker.h has the contract.
#include "ebats/broker.h"

namespace ebats {

Result<Broker::RoutedClaim> Broker::route_and_claim(uint32_t max_events, const RouteFn& route,
                                                    const std::string& claim_topic, uint32_t claim_max) {
  RoutedClaim out;
  auto routed = claim_and_commit(Lane::events, "", max_events, route);
  if (!routed.ok()) return routed.status();
  out.events = *routed;
  if (claim_max == 0) return out;
  auto claimed = claim(Lane::ntask, claim_topic, claim_max);
  if (!claimed.ok()) return claimed.status();
  out.claimed = std::move(claimed).value();
  return out;
}

}  // namespace ebats
