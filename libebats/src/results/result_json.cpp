// result_to_json(): one result record as one line of compact JSON.
#include <rapidjson/writer.h>

#include "ebats/result.h"
#include "envelope/json_io.h"

namespace ebats {

void append_result_json(const ResultRecord& r, std::string* out) {
  // params is embedded as an object when it is one JSON object, and as a
  // string otherwise (cut to a limit, it may no longer parse). Compacting it
  // also removes any newline, which a JSON-lines file cannot hold.
  std::string params_object;
  std::string params_detail;
  const bool params_is_object =
      r.params_compact || json::compact_object(r.params, &params_object, &params_detail) == json::ObjectParse::ok;
  const std::string& params_text = r.params_compact ? r.params : params_object;

  out->reserve(out->size() + 256 + r.params.size() + r.message.size());
  json::StringSink sink(out);
  json::Writer w(sink);
  w.StartObject();
  w.Key("topic");
  json::write_string(w, r.topic);
  w.Key("task_id");
  json::write_string(w, r.task_id);
  w.Key("task");
  json::write_string(w, r.task);
  w.Key("params");
  if (params_is_object) {
    w.RawValue(params_text.data(), params_text.size(), rapidjson::kObjectType);
  } else {
    json::write_string(w, r.params);
  }
  w.Key("time_ms");
  w.Int64(r.time_ms);
  w.Key("message");
  json::write_string(w, r.message);
  w.Key("status");
  json::write_string(w, r.status);
  w.Key("attempt");
  w.Uint(r.attempt);
  w.Key("started_at");
  w.Int64(r.started_at);
  w.Key("finished_at");
  w.Int64(r.finished_at);
  w.Key("due_at");  // started_at - due_at is the lateness
  w.Int64(r.due_at);
  if (!r.trace.empty()) {
    w.Key("trace");
    json::write_string(w, r.trace);
  }
  w.Key("host");
  json::write_string(w, r.host);
  w.Key("pid");
  w.Int64(r.pid);
  w.EndObject();
}

std::string result_to_json(const ResultRecord& r) {
  std::string out;
  append_result_json(r, &out);
  return out;
}

}  // namespace ebats
