#include "envelope/task_message.h"

namespace ebats {

OutMsg task_message(const Envelope& task, Lane lane) {
  OutMsg m;
  m.lane = lane;
  m.topic = task.topic;
  m.id = task.id;
  m.name = task.task;
  m.due_at = task.due_at;
  m.attempt = task.attempt;
  m.max_attempts = task.max_attempts;
  m.body = encode_envelope(task);
  return m;
}

}  // namespace ebats
