// ResultRecord: one per execution of a task, as the original's result callback
// had it (topic, task id, task, params, time used, message) plus status,
// attempt and timestamps. Written to the JSON-lines file and the results table.
#pragma once

#include <cstdint>
#include <string>

#include "ebats/clock.h"
#include "ebats/export.h"

namespace ebats {

struct ResultRecord {
  std::string topic;
  std::string task_id;
  std::string task;
  std::string params;     // JSON object text, possibly cut to the limit
  // params is one compact JSON object already (a decoded envelope's params,
  // or the worker's cut-down stand-in), written as it is; else it is parsed
  // and compacted, or written as a string when it is no object.
  bool params_compact = false;
  int64_t time_ms = 0;    // steady-clock duration of the execution
  std::string message;
  std::string status;     // ok | retry | failed | dead
  uint32_t attempt = 0;   // 0 on the first execution
  WallMs started_at = 0;
  WallMs finished_at = 0;
  WallMs due_at = 0;      // when the task was due: started_at - due_at is its lateness
  std::string trace;
  std::string host;
  int64_t pid = 0;        // child that ran it (0 when none did)
};

// One JSON object, no trailing newline.
EBATS_EXPORT std::string result_to_json(const ResultRecord& r);
// The same object appended to *out (which it does not clear).
EBATS_EXPORT void append_result_json(const ResultRecord& r, std::string* out);

}  // namespace ebats
