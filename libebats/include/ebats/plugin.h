/* ebats plugin C ABI: what a task-handler .so exports and what the host offers.
 *
 * ABI changelog, newest first (minor bump = fields appended at the end of a
 * struct; major bump = anything else):
 *   1.0 (2026-11-25) initial.
 *
 * A plugin exports exactly one symbol, ebats_plugin_entry(), returning a
 * pointer to a static const ebats_plugin that lives as long as the library.
 * The host checks struct_size and abi_major before reading anything else and
 * refuses a mismatch, naming the file, the expected and the found values:
 * abi_major must equal EBATS_ABI_MAJOR, and struct_size must cover the ABI 1.0
 * fields of ebats_plugin (up to and including shutdown): at least 56 on 64-bit
 * Linux, which is sizeof(ebats_plugin) of ABI 1.0. Any larger struct_size is
 * accepted (a newer minor appends fields; the host reads only those it knows).
 *
 * Ownership: no heap memory crosses the boundary. Strings passed to the plugin
 * are borrowed for the duration of the call; strings the plugin passes to the
 * host are copied by the host before the call returns.
 *
 * Threads: a worker child runs one handler at a time on one thread. init() and
 * shutdown() are called once per child process. Handlers must not throw C++
 * exceptions across this boundary (the C++ SDK in plugin.hpp catches them).
 */
#ifndef EBATS_PLUGIN_H
#define EBATS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EBATS_ABI_MAJOR 1
#define EBATS_ABI_MINOR 0
#define EBATS_PLUGIN_EXPORT __attribute__((visibility("default")))
#define EBATS_PLUGIN_ENTRY_SYMBOL "ebats_plugin_entry"

/* Handler return codes. Any other value counts as EBATS_FAIL. */
enum { EBATS_OK = 0, EBATS_RETRY = 1, EBATS_FAIL = 2 };
enum { EBATS_LOG_DEBUG = 0, EBATS_LOG_INFO = 1, EBATS_LOG_WARN = 2, EBATS_LOG_ERROR = 3 };

/* One task execution. Host-owned; valid only during the handler call. */
typedef struct ebats_task_ctx {
  uint32_t struct_size;       /* sizeof(ebats_task_ctx) as the host built it */
  const char *id;             /* task UUID: stable across retries, the idempotency key */
  const char *name;           /* task name, e.g. "closeOrder" */
  const char *topic;
  const char *trace;          /* correlation id, or NULL */
  const char *params;         /* JSON object text; params[params_len] == '\0' */
  size_t params_len;
  uint32_t attempt;           /* 0 on the first execution */
  uint32_t max_attempts;      /* 1 + retries allowed */
  int64_t deadline_ms;        /* wall-clock ms of the soft timeout */
  void *host_data;            /* private to the host: do not touch */
} ebats_task_ctx;

/* Services of the host. Valid from init() until shutdown() returns. */
typedef struct ebats_host {
  uint32_t struct_size;
  uint16_t abi_major, abi_minor;
  /* Writes a log line attributed to the plugin (and the task, if ctx != NULL). */
  void (*log)(const ebats_task_ctx *ctx, int level, const char *msg);
  /* Sets the result record's message for this execution (copied, truncated to the limit). */
  void (*set_result_message)(const ebats_task_ctx *ctx, const char *msg, size_t len);
  /* If the handler returns EBATS_RETRY: wait this long before the next attempt
   * instead of the registration's backoff (clamped to 7 days). */
  void (*retry_after)(const ebats_task_ctx *ctx, uint64_t delay_ms);
  /* The original's RetryException count: allow at most max_retries retries in all. */
  void (*retry_limit)(const ebats_task_ctx *ctx, uint32_t max_retries);
  /* 1 once the soft timeout passed or the worker is shutting down: finish soon. */
  int (*should_stop)(const ebats_task_ctx *ctx);
} ebats_host;

typedef int (*ebats_handler_fn)(const ebats_task_ctx *ctx, void *plugin_state);

typedef struct ebats_task_def {
  const char *name;           /* [A-Za-z0-9_.:-]{1,128}, unique across all loaded plugins */
  ebats_handler_fn handler;
} ebats_task_def;

/* The plugin descriptor: static const inside the plugin, never freed. */
typedef struct ebats_plugin {
  uint32_t struct_size;       /* sizeof(ebats_plugin) as the plugin was built; >= 56 (64-bit) */
  uint16_t abi_major;         /* EBATS_ABI_MAJOR the plugin was built against */
  uint16_t abi_minor;
  const char *name;           /* short plugin name, e.g. "shop" */
  const char *version;        /* free-form, e.g. "1.0.0" */
  const ebats_task_def *tasks;
  size_t n_tasks;
  /* Called once per child before any handler; config_json is "{}" unless
   * configured. Return 0 to accept, anything else refuses the plugin.
   * May be NULL. *plugin_state is handed to every handler and to shutdown(). */
  int (*init)(const ebats_host *host, const char *config_json, size_t len, void **plugin_state);
  /* Called once when the child exits cleanly. May be NULL. */
  void (*shutdown)(void *plugin_state);
} ebats_plugin;

typedef const ebats_plugin *(*ebats_plugin_entry_fn)(void);

/* The one exported symbol of a plugin. Declared here so that plugins get a
 * type check; a plugin defines it (the C++ SDK's EBATS_PLUGIN macro does). */
EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void);

#ifdef __cplusplus
}
#endif
#endif /* EBATS_PLUGIN_H */
