/* dup_task.so: a valid plugin whose task "noop" collides with test_tasks.so when both are in one directory. */
#include <ebats/plugin.h>

static int noop(const ebats_task_ctx *ctx, void *state) { (void)ctx; (void)state; return EBATS_OK; }
static const ebats_task_def TASKS[] = {{"noop", noop}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "dup_task", "1.0.0",
                                    TASKS, 1, 0, 0};
EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
