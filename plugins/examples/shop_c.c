/* shop_c.so: closeOrder in plain C, the example of the raw ABI (ebats/plugin.h).
 *
 *   cc -shared -fPIC -fvisibility=hidden -I<prefix>/include -o shop_c.so shop_c.c
 *
 * The task is named closeOrderC so that it can be loaded next to shop.so
 * (task names must be unique across the plugins of a directory). */
#include <ebats/plugin.h>
#include <stdio.h>
#include <string.h>

static int database_busy(void) { return 0; }

/* Finds "order_id": <digits or "string"> in the params text. Real code would
 * use a JSON parser; this keeps the example dependency-free. */
static int find_order_id(const char *params, char *out, size_t out_size) {
  const char *p = strstr(params, "\"order_id\"");
  size_t n = 0;
  if (p == NULL) return 0;
  p += strlen("\"order_id\"");
  while (*p == ' ' || *p == ':') p++;
  if (*p == '"') p++;
  while (p[n] != '\0' && p[n] != '"' && p[n] != ',' && p[n] != '}' && p[n] != ' ' && n + 1 < out_size) {
    out[n] = p[n];
    n++;
  }
  out[n] = '\0';
  return n > 0;
}

static int close_order(const ebats_task_ctx *task, void *plugin_state) {
  const ebats_host *host = (const ebats_host *)plugin_state; /* init() stored the host table */
  char id[64];
  char msg[128];
  int len;
  if (!find_order_id(task->params, id, sizeof id)) {
    host->set_result_message(task, "order_id missing", strlen("order_id missing"));
    return EBATS_FAIL; /* permanent: retrying cannot help */
  }
  if (database_busy()) {
    host->retry_after(task, 30000); /* instead of the registration's backoff */
    host->set_result_message(task, "database busy", strlen("database busy"));
    return EBATS_RETRY;
  }
  len = snprintf(msg, sizeof msg, "order %s closed", id);
  host->set_result_message(task, msg, (size_t)len);
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

static const ebats_task_def TASKS[] = {{"closeOrderC", close_order}};

static const ebats_plugin PLUGIN = {
    sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "shop_c", "1.0.0",
    TASKS, sizeof TASKS / sizeof TASKS[0], init, shutdown,
};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
