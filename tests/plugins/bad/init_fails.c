/* init_fails.so: init() refuses to start with code 7. */
#include <ebats/plugin.h>

static int noop(const ebats_task_ctx *ctx, void *state) { (void)ctx; (void)state; return EBATS_OK; }
static int init(const ebats_host *host, const char *config_json, size_t len, void **plugin_state) {
  (void)config_json; (void)len; (void)plugin_state;
  host->log(0, EBATS_LOG_ERROR, "init_fails: refusing to start on purpose");
  return 7;
}
static const ebats_task_def TASKS[] = {{"init_fails_task", noop}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "init_fails", "1.0.0",
                                    TASKS, 1, init, 0};
EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
