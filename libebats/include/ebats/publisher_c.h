/* The C producer API, for FFI from other languages (PHP FFI, Python ctypes).
 *
 * Conventions: every fallible call returns 0 on success and -1 on failure; on
 * failure *errptr (when errptr != NULL) receives a malloc'ed message that the
 * caller frees with ebats_free_error(). Handles are opaque and not
 * thread-safe: one per thread. Calls return once the message is durable. */
#ifndef EBATS_PUBLISHER_C_H
#define EBATS_PUBLISHER_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ebats_publisher ebats_publisher;

/* Opens a publisher from a config file path. */
__attribute__((visibility("default"))) int ebats_publisher_open(const char *config_path, ebats_publisher **out,
                                                                char **errptr);
/* Publishes event `name` with params `json` (a JSON object, `len` bytes).
 * id_out (may be NULL) receives the event id: 36 chars + NUL. */
__attribute__((visibility("default"))) int ebats_publish_event(ebats_publisher *p, const char *name,
                                                               const char *json, size_t len, char id_out[37],
                                                               char **errptr);
/* Enqueues one task directly, due after delay_ms (0 = now). */
__attribute__((visibility("default"))) int ebats_enqueue_task(ebats_publisher *p, const char *topic,
                                                              const char *task, const char *json, size_t len,
                                                              uint64_t delay_ms, char id_out[37], char **errptr);
__attribute__((visibility("default"))) void ebats_publisher_close(ebats_publisher *p);
__attribute__((visibility("default"))) void ebats_free_error(char *err);

#ifdef __cplusplus
}
#endif
#endif /* EBATS_PUBLISHER_C_H */
