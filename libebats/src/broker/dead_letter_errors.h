// The errors both backends' dead-letter stores give for the same mistakes, in
// the same words (ebatsctl dead show/replay/purge print them as they are).
#pragma once

#include <cstdint>
#include <string>

#include "ebats/broker.h"
#include "ebats/status.h"

namespace ebats {

// `seq` names no dead letter (never did, or was purged).
inline Status no_dead_letter(uint64_t seq) {
  return Status::not_found("no dead letter with id " + std::to_string(seq));
}

// `entry` holds bytes that were never a valid envelope: there is nothing to
// put back on a queue.
inline Status raw_dead_letter_not_replayable(const DeadLetterEntry& entry) {
  const std::string number = std::to_string(entry.seq);
  return Status::invalid("dead letter " + number + " holds raw bytes (reason: " + entry.letter.reason +
                         ") and cannot be replayed; inspect it with `ebatsctl dead show " + number +
                         "` and purge it");
}

}  // namespace ebats
