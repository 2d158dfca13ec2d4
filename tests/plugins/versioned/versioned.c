/* versioned_v1.so, versioned_v2.so: one plugin built twice, told apart by
 * PLUGIN_VERSION, for the reload tests (deploy a new version by rename).
 * Task "versioned" appends "<id> <attempt> versioned\n" to $EBATS_TEST_RECORD,
 * as the other test plugins do, and answers "version <PLUGIN_VERSION>". */
#include <ebats/plugin.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PLUGIN_VERSION
#error "build with -DPLUGIN_VERSION=\"N\""
#endif

static int versioned(const ebats_task_ctx *ctx, void *plugin_state) {
  const ebats_host *host = (const ebats_host *)plugin_state;
  const char *path = getenv("EBATS_TEST_RECORD");
  if (path != NULL && *path != '\0') {
    char line[160];
    const int n = snprintf(line, sizeof line, "%s %u versioned\n", ctx->id, ctx->attempt);
    const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || n <= 0 || write(fd, line, (size_t)n) != n) {
      if (fd >= 0) close(fd);
      return EBATS_FAIL;
    }
    close(fd);
  }
  const char message[] = "version " PLUGIN_VERSION;
  host->set_result_message(ctx, message, strlen(message));
  return EBATS_OK;
}

static int init(const ebats_host *host, const char *config_json, size_t len, void **plugin_state) {
  (void)config_json;
  (void)len;
  *plugin_state = (void *)host;
  return 0;
}

static void shutdown(void *plugin_state) { (void)plugin_state; }

static const ebats_task_def TASKS[] = {{"versioned", versioned}};

static const ebats_plugin PLUGIN = {
    sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "versioned", PLUGIN_VERSION ".0.0",
    TASKS, sizeof TASKS / sizeof TASKS[0], init, shutdown,
};

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
