// The C API over ebats::Publisher. No exception or C++ type crosses it.
#include "ebats/publisher_c.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "ebats/publisher.h"

struct ebats_publisher {
  std::unique_ptr<ebats::Publisher> impl;
};

namespace {

int fail(char** errptr, const std::string& message) {
  if (errptr) {
    *errptr = static_cast<char*>(std::malloc(message.size() + 1));
    if (*errptr) std::memcpy(*errptr, message.c_str(), message.size() + 1);
  }
  return -1;
}

void copy_id(const std::string& id, char id_out[37]) {
  if (!id_out) return;
  std::strncpy(id_out, id.c_str(), 36);
  id_out[36] = '\0';
}

}  // namespace

extern "C" int ebats_publisher_open(const char* config_path, ebats_publisher** out, char** errptr) {
  if (!config_path || !out) return fail(errptr, "ebats_publisher_open: config_path and out must not be NULL");
  try {
    auto p = ebats::Publisher::open(std::string(config_path));
    if (!p.ok()) return fail(errptr, p.status().message());
    *out = new ebats_publisher{std::move(p).value()};
    return 0;
  } catch (const std::exception& e) {
    return fail(errptr, e.what());
  }
}

extern "C" int ebats_publish_event(ebats_publisher* p, const char* name, const char* json, size_t len,
                                   char id_out[37], char** errptr) {
  if (!p || !name || !json) return fail(errptr, "ebats_publish_event: p, name and json must not be NULL");
  try {
    auto id = p->impl->publish(name, std::string_view(json, len));
    if (!id.ok()) return fail(errptr, id.status().message());
    copy_id(*id, id_out);
    return 0;
  } catch (const std::exception& e) {
    return fail(errptr, e.what());
  }
}

extern "C" int ebats_enqueue_task(ebats_publisher* p, const char* topic, const char* task, const char* json,
                                  size_t len, uint64_t delay_ms, char id_out[37], char** errptr) {
  if (!p || !topic || !task || !json) return fail(errptr, "ebats_enqueue_task: arguments must not be NULL");
  try {
    ebats::TaskOptions o;
    o.delay = std::chrono::milliseconds(static_cast<int64_t>(delay_ms));
    auto id = p->impl->enqueue_task(topic, task, std::string_view(json, len), o);
    if (!id.ok()) return fail(errptr, id.status().message());
    copy_id(*id, id_out);
    return 0;
  } catch (const std::exception& e) {
    return fail(errptr, e.what());
  }
}

extern "C" void ebats_publisher_close(ebats_publisher* p) { delete p; }

extern "C" void ebats_free_error(char* err) { std::free(err); }
