/* bench_noop.so: the benchmark's tasks (bench/run.sh), raw C ABI (ebats/plugin.h).
 *
 *   noop          does nothing and returns EBATS_OK: what is measured is ebats
 *                 itself (broker, scheduler, worker, child protocol, results).
 *   bench_record  appends "<task id> <attempt> bench_record\n" to the file
 *                 named by the environment variable EBATS_BENCH_RECORD with
 *                 one O_APPEND write(2), so that concurrent children never
 *                 interleave lines; counting the lines and distinct ids tells
 *                 exactly how many executions were lost or duplicated. Fails
 *                 (EBATS_FAIL) when the variable is unset or the file cannot
 *                 be written.
 *   bench_retry_once
 *                 records its execution the same way (the line ends in
 *                 bench_retry_once), then on attempt 0 asks for a retry after
 *                 EBATS_BENCH_RETRY_MS milliseconds (default 1000) with
 *                 retry_after() and returns EBATS_RETRY; on any later attempt
 *                 it returns EBATS_OK. So each task runs exactly twice, and
 *                 the gap between the runs shows how closely the asked delay
 *                 is kept (bench/run.sh --broker rabbitmq, W3).
 *   bench_stamp   reads CLOCK_REALTIME first thing, then records its
 *                 execution the same way with that time appended in ns
 *                 ("<task id> <attempt> bench_stamp <ns>"): the pickup
 *                 measurement (bench/run.sh) takes it as the handler's start,
 *                 to the microsecond where the result records keep whole ms.
 *
 * Each worker child calls init() once: it opens the record file then, so the
 * handler costs one write(2). The state is the plugin's own heap block, freed
 * by shutdown(). */
#include <ebats/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_state {
  const ebats_host *host;
  int record_fd; /* -1 when EBATS_BENCH_RECORD is unset or could not be opened */
  char record_error[256];
  uint64_t retry_ms; /* EBATS_BENCH_RETRY_MS, default 1000 */
} bench_state;

static void set_message(const bench_state *state, const ebats_task_ctx *task, const char *msg) {
  state->host->set_result_message(task, msg, strlen(msg));
}

static int noop(const ebats_task_ctx *task, void *plugin_state) {
  (void)task;
  (void)plugin_state;
  return EBATS_OK;
}

/* Appends "<id> <attempt> <task>\n" to the record file, or with stamp_ns > 0
 * "<id> <attempt> <task> <stamp_ns>\n"; 0 on success, else sets the result
 * message and returns the handler's code. */
static int record_line(const bench_state *state, const ebats_task_ctx *task, long long stamp_ns) {
  char line[256];
  int len;
  ssize_t written;
  if (state->record_fd < 0) {
    set_message(state, task, state->record_error);
    return EBATS_FAIL;
  }
  if (stamp_ns > 0) {
    len = snprintf(line, sizeof line, "%s %u %s %lld\n", task->id, (unsigned)task->attempt, task->name, stamp_ns);
  } else {
    len = snprintf(line, sizeof line, "%s %u %s\n", task->id, (unsigned)task->attempt, task->name);
  }
  if (len <= 0 || (size_t)len >= sizeof line) {
    set_message(state, task, "bench_record: task id too long for the record line");
    return EBATS_FAIL;
  }
  written = write(state->record_fd, line, (size_t)len);
  if (written != (ssize_t)len) {
    char msg[256];
    snprintf(msg, sizeof msg, "bench_record: write to $EBATS_BENCH_RECORD failed: %s",
             written < 0 ? strerror(errno) : "short write");
    set_message(state, task, msg);
    return EBATS_RETRY;
  }
  return 0;
}

static int record(const bench_state *state, const ebats_task_ctx *task) { return record_line(state, task, 0); }

static int bench_stamp(const ebats_task_ctx *task, void *plugin_state) {
  struct timespec now;
  int rc;
  clock_gettime(CLOCK_REALTIME, &now);
  rc = record_line((const bench_state *)plugin_state, task, (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
  return rc != 0 ? rc : EBATS_OK;
}

static int bench_record(const ebats_task_ctx *task, void *plugin_state) {
  const int rc = record((const bench_state *)plugin_state, task);
  return rc != 0 ? rc : EBATS_OK;
}

static int bench_retry_once(const ebats_task_ctx *task, void *plugin_state) {
  const bench_state *state = (const bench_state *)plugin_state;
  const int rc = record(state, task);
  if (rc != 0) return rc;
  if (task->attempt == 0) {
    state->host->retry_after(task, state->retry_ms);
    set_message(state, task, "bench_retry_once: attempt 0 asks for a retry");
    return EBATS_RETRY;
  }
  return EBATS_OK;
}

static int init(const ebats_host *host, const char *config_json, size_t len, void **plugin_state) {
  const char *path = getenv("EBATS_BENCH_RECORD");
  const char *retry_ms = getenv("EBATS_BENCH_RETRY_MS");
  bench_state *state;
  (void)config_json;
  (void)len;
  if (host->abi_major != EBATS_ABI_MAJOR) return 1;
  state = (bench_state *)calloc(1, sizeof *state);
  if (state == NULL) return 1;
  state->host = host;
  state->record_fd = -1;
  state->retry_ms = 1000;
  if (retry_ms != NULL && retry_ms[0] != '\0') {
    char *end;
    unsigned long long v = strtoull(retry_ms, &end, 10);
    if (*end != '\0') {
      free(state);
      return 1; /* a typo must not silently measure another delay */
    }
    state->retry_ms = (uint64_t)v;
  }
  if (path == NULL || path[0] == '\0') {
    snprintf(state->record_error, sizeof state->record_error,
             "bench_record: set EBATS_BENCH_RECORD to a file path in the worker's environment");
  } else {
    state->record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (state->record_fd < 0) {
      snprintf(state->record_error, sizeof state->record_error, "bench_record: cannot open %s: %s", path,
               strerror(errno));
    }
  }
  *plugin_state = state;
  return 0;
}

static void shutdown(void *plugin_state) {
  bench_state *state = (bench_state *)plugin_state;
  if (state->record_fd >= 0) close(state->record_fd);
  free(state);
}

static const ebats_task_def TASKS[] = {
    {"noop", noop}, {"bench_record", bench_record}, {"bench_retry_once", bench_retry_once},
    {"bench_stamp", bench_stamp}};

static const ebats_plugin PLUGIN = {
    sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "bench_noop", "1.0.0",
    TASKS, sizeof TASKS / sizeof TASKS[0], init, shutdown,
};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
