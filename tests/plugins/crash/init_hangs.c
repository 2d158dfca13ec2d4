/* A plugin whose init() never returns: every worker child that loads it hangs
 * before it is ready. The worker must say so, kill the child after
 * workers.<topic>.start_timeout and retry with a backoff, the tasks queued. */
#include <ebats/plugin.h>
#include <stddef.h>
#include <unistd.h>

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
  for (;;) pause();
  return 0;
}

static const ebats_task_def TASKS[] = {{"hang_init_task", handle}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "init_hangs", "1.0.0",
                                    TASKS, 1, init, NULL};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
