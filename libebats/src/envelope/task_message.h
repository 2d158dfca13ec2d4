// task_message(): the broker message that carries one task envelope.
//
// The scheduler's fan-out, the worker's retries and Publisher::enqueue all
// publish tasks; this is the one place that mirrors a task envelope's id,
// topic, name, due time and attempts into the OutMsg the broker indexes, and
// encodes the envelope as its body. Pure.
#pragma once

#include "ebats/broker.h"
#include "ebats/envelope.h"

namespace ebats {

// REQUIRES: task.kind == EnvelopeKind::task. `lane` is the caller's choice:
// Lane::ntask for a task due now, Lane::dtask for a delayed task or a retry.
OutMsg task_message(const Envelope& task, Lane lane);

}  // namespace ebats
