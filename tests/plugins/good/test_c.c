/* test_c.so: a plain C plugin that uses only ebats/plugin.h.
 * Task c_echo copies the params text into the result message. */
#include <ebats/plugin.h>

static int c_echo(const ebats_task_ctx *ctx, void *plugin_state) {
  const ebats_host *host = (const ebats_host *)plugin_state; /* init() stored the host table */
  host->set_result_message(ctx, ctx->params, ctx->params_len);
  return EBATS_OK;
}

static int init(const ebats_host *host, const char *config_json, size_t len, void **plugin_state) {
  (void)config_json;
  (void)len;
  if (host->abi_major != EBATS_ABI_MAJOR) return 1;
  *plugin_state = (void *)host;
  return 0;
}

static void shutdown(void *plugin_state) { (void)plugin_state; }

static const ebats_task_def TASKS[] = {{"c_echo", c_echo}};

static const ebats_plugin PLUGIN = {
    sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "test_c", "1.0.0",
    TASKS, sizeof TASKS / sizeof TASKS[0], init, shutdown,
};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
