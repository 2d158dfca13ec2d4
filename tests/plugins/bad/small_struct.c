/* small_struct.so: a descriptor whose struct_size (8) does not cover the ABI 1.0 fields. */
#include <ebats/plugin.h>

static int noop(const ebats_task_ctx *ctx, void *state) { (void)ctx; (void)state; return EBATS_OK; }
static const ebats_task_def TASKS[] = {{"small_struct_task", noop}};
static const ebats_plugin PLUGIN = {8, EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "small_struct", "1.0.0", TASKS, 1, 0, 0};
EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
