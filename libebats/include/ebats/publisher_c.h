/* The C producer API of libebats, for C programs and for FFI from other
 * languages (the PHP package uses PHP's FFI, the Python module ctypes).
 * docs/PRODUCERS.md shows every call with an example.
 *
 * ABI: stable from C API version 1 on. Calls and option setters may be added
 * (EBATS_C_API_VERSION grows then); none is removed or changes its
 * signature. Handles are opaque, so their layout is free to change.
 *
 * Errors: every fallible call returns 0 on success and -1 on failure; on
 * failure *errptr (when errptr != NULL) receives a malloc'ed message that
 * says what failed and where ("ebats_batch_add_event: event 'bad name!':
 * ..."); free it with ebats_free_error(). On success *errptr is untouched.
 *
 * Durability: a call that publishes returns once the broker has made the
 * message durable (SQLite: COMMIT with synchronous=FULL; RabbitMQ: the
 * publisher confirm), or fails.
 *
 * Threads: handles are not thread-safe; use one publisher per thread. A
 * batch belongs to the publisher that made it and must be freed before it.
 * An options object may be shared by threads that only read it. */
#ifndef EBATS_PUBLISHER_C_H
#define EBATS_PUBLISHER_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EBATS_C_API_VERSION 1
#define EBATS_C_EXPORT __attribute__((visibility("default")))

typedef struct ebats_publisher ebats_publisher;
typedef struct ebats_options ebats_options;
typedef struct ebats_batch ebats_batch;

/* ---- version ---- */

/* The library's version, e.g. "0.1.0" (static storage; never NULL). */
EBATS_C_EXPORT const char *ebats_version(void);
/* The C API version the library implements: EBATS_C_API_VERSION when it was
 * built. A caller compiled against version N may use every call of N when
 * this returns >= N. */
EBATS_C_EXPORT int ebats_c_api_version(void);

/* ---- publisher ---- */

/* Opens a publisher from a config file path (its `broker` section). */
EBATS_C_EXPORT int ebats_publisher_open(const char *config_path, ebats_publisher **out, char **errptr);
/* Closes the connection and frees the handle; NULL is ignored. */
EBATS_C_EXPORT void ebats_publisher_close(ebats_publisher *p);

/* ---- options of one publish (all optional) ---- */

/* A new options object: no id, no trace, no delay. NULL when out of memory. */
EBATS_C_EXPORT ebats_options *ebats_options_new(void);
EBATS_C_EXPORT void ebats_options_free(ebats_options *o);
/* Events only: the event's id, a lowercase UUID. Publishing again with the
 * same id yields the same task ids, so a producer that is unsure whether a
 * publish went through can publish again (SQLite ignores tasks already
 * queued; on RabbitMQ workers see a duplicate with the same id). NULL or ""
 * clears it (a new id per publish). The string is copied. Checked when used. */
EBATS_C_EXPORT int ebats_options_set_event_id(ebats_options *o, const char *event_id, char **errptr);
/* A correlation id carried into every task and result record (<= 128 bytes).
 * NULL or "" clears it. */
EBATS_C_EXPORT int ebats_options_set_trace_id(ebats_options *o, const char *trace_id, char **errptr);
/* Tasks only: run no earlier than delay_ms after the publish (0: now). */
EBATS_C_EXPORT int ebats_options_set_delay_ms(ebats_options *o, uint64_t delay_ms, char **errptr);

/* ---- publishing one message ---- */

/* Publishes event `name` with params `json` (one JSON object, `len` bytes).
 * id_out (may be NULL) receives the event id: 36 chars + NUL. */
EBATS_C_EXPORT int ebats_publish_event(ebats_publisher *p, const char *name, const char *json, size_t len,
                                       char id_out[37], char **errptr);
/* The same with options (o may be NULL; a delay is refused: events are
 * routed at once, their tasks carry the delays the config gives them). */
EBATS_C_EXPORT int ebats_publish_event_opts(ebats_publisher *p, const char *name, const char *json, size_t len,
                                            const ebats_options *o, char id_out[37], char **errptr);
/* Creates one task on `topic` directly (the original's Task::create), due
 * after delay_ms (0 = now). id_out (may be NULL) receives the task id. */
EBATS_C_EXPORT int ebats_enqueue_task(ebats_publisher *p, const char *topic, const char *task, const char *json,
                                      size_t len, uint64_t delay_ms, char id_out[37], char **errptr);
/* The same with options (o may be NULL; an event id is refused). */
EBATS_C_EXPORT int ebats_enqueue_task_opts(ebats_publisher *p, const char *topic, const char *task,
                                           const char *json, size_t len, const ebats_options *o, char id_out[37],
                                           char **errptr);

/* ---- batches: many events and tasks, one commit ---- */

/* A new, empty batch of publisher p. NULL when p is NULL or out of memory. */
EBATS_C_EXPORT ebats_batch *ebats_batch_new(ebats_publisher *p);
/* Frees the batch; what was added and not committed is dropped. NULL is ignored. */
EBATS_C_EXPORT void ebats_batch_free(ebats_batch *b);
/* Checks and adds one event or task (as the calls above; o may be NULL).
 * id_out receives its id now. A refused one leaves the batch as it was. */
EBATS_C_EXPORT int ebats_batch_add_event(ebats_batch *b, const char *name, const char *json, size_t len,
                                         const ebats_options *o, char id_out[37], char **errptr);
EBATS_C_EXPORT int ebats_batch_add_task(ebats_batch *b, const char *topic, const char *task, const char *json,
                                        size_t len, const ebats_options *o, char id_out[37], char **errptr);
/* How many messages wait in the batch. */
EBATS_C_EXPORT size_t ebats_batch_size(const ebats_batch *b);
/* Publishes everything added, then empties the batch (also when it fails).
 * SQLite: one transaction, all or nothing. RabbitMQ: each message is
 * confirmed; on failure some may have been published: add and commit the
 * same messages again (same event ids) to be sure. An empty batch commits
 * nothing and succeeds. */
EBATS_C_EXPORT int ebats_batch_commit(ebats_batch *b, char **errptr);

/* ---- errors ---- */

/* Frees a message received through errptr; NULL is ignored. */
EBATS_C_EXPORT void ebats_free_error(char *err);

#ifdef __cplusplus
}
#endif
#endif /* EBATS_PUBLISHER_C_H */
