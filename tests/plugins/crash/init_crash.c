/* A plugin whose init() crashes the process: every worker child that loads it
 * dies before it is ready. The worker must stay up, keep the tasks queued and
 * retry starting children with a backoff. */
#include <ebats/plugin.h>
#include <signal.h>
#include <stddef.h>

static int handle(const ebats_task_ctx *ctx, void *state) {
  (void)ctx;
  (void)state;
  return EBATS_OK;
}

static int init(const ebats_host *host, const char *config, size_t len, void **state) {
  (void)host;
  (void)config;
  (void)len;
  (void)state;
  raise(SIGSEGV);
  return 0;
}

static const ebats_task_def TASKS[] = {{"crash_init_task", handle}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "init_crash", "1.0.0",
                                    TASKS, 1, init, NULL};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
