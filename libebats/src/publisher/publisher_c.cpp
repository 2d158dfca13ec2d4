// The C API over ebats::Publisher. No exception or C++ type crosses it: every
// entry point catches, and reports through errptr with its own name first.
#include "ebats/publisher_c.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "ebats/publisher.h"

struct ebats_publisher {
  std::unique_ptr<ebats::Publisher> impl;
};

struct ebats_options {
  std::string event_id;
  std::string trace_id;
  uint64_t delay_ms = 0;
};

struct ebats_batch {
  explicit ebats_batch(ebats::Publisher& p) : impl(p.batch()) {}
  ebats::PublishBatch impl;
};

namespace {

// Allocates nothing but the message itself (malloc, no exception): it runs
// outside guarded() too, and in its bad_alloc handler.
int fail(char** errptr, const char* where, std::string_view message) noexcept {
  if (errptr) {
    const size_t where_len = std::strlen(where);
    const size_t len = where_len + 2 + message.size();
    char* text = static_cast<char*>(std::malloc(len + 1));
    if (text) {
      std::memcpy(text, where, where_len);
      std::memcpy(text + where_len, ": ", 2);
      std::memcpy(text + where_len + 2, message.data(), message.size());
      text[len] = '\0';
    }
    *errptr = text;
  }
  return -1;
}

void copy_id(const std::string& id, char id_out[37]) {
  if (!id_out) return;
  std::strncpy(id_out, id.c_str(), 36);
  id_out[36] = '\0';
}

// Runs `body` (returning a Result<std::string> id or a Status) and turns it
// into the C convention, with `where` naming the call in any message.
template <class Body>
int guarded(const char* where, char** errptr, Body body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(errptr, where, "out of memory");
  } catch (const std::exception& e) {
    return fail(errptr, where, e.what());
  } catch (...) {
    return fail(errptr, where, "unknown error");
  }
}

int deliver_id(const char* where, const ebats::Result<std::string>& id, char id_out[37], char** errptr) {
  if (!id.ok()) return fail(errptr, where, id.status().message());
  copy_id(*id, id_out);
  return 0;
}

// The options for an event; a delay is refused (events are routed at once).
bool event_options(const char* where, const ebats_options* o, ebats::EventOptions* out, char** errptr) {
  if (!o) return true;
  if (o->delay_ms != 0) {
    fail(errptr, where,
         "an event takes no delay (its tasks get the delays the config registers); enqueue a task to delay it");
    return false;
  }
  out->id = o->event_id;
  out->trace = o->trace_id;
  return true;
}

// The options for a task; an event id is refused (task ids come from the library).
bool task_options(const char* where, const ebats_options* o, ebats::TaskOptions* out, char** errptr) {
  if (!o) return true;
  if (!o->event_id.empty()) {
    fail(errptr, where, "an event id applies to events only; a task gets its id from the library");
    return false;
  }
  if (o->delay_ms > static_cast<uint64_t>(INT64_MAX)) {
    fail(errptr, where, "delay_ms is too large");
    return false;
  }
  out->delay = std::chrono::milliseconds(static_cast<int64_t>(o->delay_ms));
  out->trace = o->trace_id;
  return true;
}

}  // namespace

extern "C" const char* ebats_version(void) { return EBATS_VERSION; }

extern "C" int ebats_c_api_version(void) { return EBATS_C_API_VERSION; }

extern "C" int ebats_publisher_open(const char* config_path, ebats_publisher** out, char** errptr) {
  constexpr const char* where = "ebats_publisher_open";
  if (!config_path || !out) return fail(errptr, where, "config_path and out must not be NULL");
  return guarded(where, errptr, [&] {
    auto p = ebats::Publisher::open(std::string(config_path));
    if (!p.ok()) return fail(errptr, where, p.status().message());  // names the file
    *out = new ebats_publisher{std::move(p).value()};
    return 0;
  });
}

extern "C" void ebats_publisher_close(ebats_publisher* p) { delete p; }

extern "C" ebats_options* ebats_options_new(void) { return new (std::nothrow) ebats_options(); }

extern "C" void ebats_options_free(ebats_options* o) { delete o; }

extern "C" int ebats_options_set_event_id(ebats_options* o, const char* event_id, char** errptr) {
  constexpr const char* where = "ebats_options_set_event_id";
  if (!o) return fail(errptr, where, "options must not be NULL");
  return guarded(where, errptr, [&] {
    o->event_id = event_id ? event_id : "";
    return 0;
  });
}

extern "C" int ebats_options_set_trace_id(ebats_options* o, const char* trace_id, char** errptr) {
  constexpr const char* where = "ebats_options_set_trace_id";
  if (!o) return fail(errptr, where, "options must not be NULL");
  return guarded(where, errptr, [&] {
    o->trace_id = trace_id ? trace_id : "";
    return 0;
  });
}

extern "C" int ebats_options_set_delay_ms(ebats_options* o, uint64_t delay_ms, char** errptr) {
  if (!o) return fail(errptr, "ebats_options_set_delay_ms", "options must not be NULL");
  o->delay_ms = delay_ms;
  return 0;
}

extern "C" int ebats_publish_event(ebats_publisher* p, const char* name, const char* json, size_t len,
                                   char id_out[37], char** errptr) {
  return ebats_publish_event_opts(p, name, json, len, nullptr, id_out, errptr);
}

extern "C" int ebats_publish_event_opts(ebats_publisher* p, const char* name, const char* json, size_t len,
                                        const ebats_options* o, char id_out[37], char** errptr) {
  constexpr const char* where = "ebats_publish_event";
  if (!p || !name || !json) return fail(errptr, where, "publisher, name and json must not be NULL");
  return guarded(where, errptr, [&] {
    ebats::EventOptions eo;
    if (!event_options(where, o, &eo, errptr)) return -1;
    return deliver_id(where, p->impl->publish(name, std::string_view(json, len), eo), id_out, errptr);
  });
}

extern "C" int ebats_enqueue_task(ebats_publisher* p, const char* topic, const char* task, const char* json,
                                  size_t len, uint64_t delay_ms, char id_out[37], char** errptr) {
  ebats_options o;
  o.delay_ms = delay_ms;
  return ebats_enqueue_task_opts(p, topic, task, json, len, &o, id_out, errptr);
}

extern "C" int ebats_enqueue_task_opts(ebats_publisher* p, const char* topic, const char* task, const char* json,
                                       size_t len, const ebats_options* o, char id_out[37], char** errptr) {
  constexpr const char* where = "ebats_enqueue_task";
  if (!p || !topic || !task || !json) return fail(errptr, where, "publisher, topic, task and json must not be NULL");
  return guarded(where, errptr, [&] {
    ebats::TaskOptions to;
    if (!task_options(where, o, &to, errptr)) return -1;
    return deliver_id(where, p->impl->enqueue_task(topic, task, std::string_view(json, len), to), id_out, errptr);
  });
}

extern "C" ebats_batch* ebats_batch_new(ebats_publisher* p) {
  if (!p) return nullptr;
  return new (std::nothrow) ebats_batch(*p->impl);
}

extern "C" void ebats_batch_free(ebats_batch* b) { delete b; }

extern "C" int ebats_batch_add_event(ebats_batch* b, const char* name, const char* json, size_t len,
                                     const ebats_options* o, char id_out[37], char** errptr) {
  constexpr const char* where = "ebats_batch_add_event";
  if (!b || !name || !json) return fail(errptr, where, "batch, name and json must not be NULL");
  return guarded(where, errptr, [&] {
    ebats::EventOptions eo;
    if (!event_options(where, o, &eo, errptr)) return -1;
    return deliver_id(where, b->impl.add_event(name, std::string_view(json, len), eo), id_out, errptr);
  });
}

extern "C" int ebats_batch_add_task(ebats_batch* b, const char* topic, const char* task, const char* json,
                                    size_t len, const ebats_options* o, char id_out[37], char** errptr) {
  constexpr const char* where = "ebats_batch_add_task";
  if (!b || !topic || !task || !json) return fail(errptr, where, "batch, topic, task and json must not be NULL");
  return guarded(where, errptr, [&] {
    ebats::TaskOptions to;
    if (!task_options(where, o, &to, errptr)) return -1;
    return deliver_id(where, b->impl.add_task(topic, task, std::string_view(json, len), to), id_out, errptr);
  });
}

extern "C" size_t ebats_batch_size(const ebats_batch* b) { return b ? b->impl.size() : 0; }

extern "C" int ebats_batch_commit(ebats_batch* b, char** errptr) {
  constexpr const char* where = "ebats_batch_commit";
  if (!b) return fail(errptr, where, "batch must not be NULL");
  return guarded(where, errptr, [&] {
    const size_t n = b->impl.size();
    ebats::Status s = b->impl.commit();
    if (!s.ok()) return fail(errptr, where, std::to_string(n) + " messages: " + s.message());
    return 0;
  });
}

extern "C" void ebats_free_error(char* err) { std::free(err); }
