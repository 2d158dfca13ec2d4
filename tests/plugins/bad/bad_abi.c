/* bad_abi.so: claims abi_major 99; the loader must refuse it before reading further. */
#include <ebats/plugin.h>

static int noop(const ebats_task_ctx *ctx, void *state) { (void)ctx; (void)state; return EBATS_OK; }
static const ebats_task_def TASKS[] = {{"bad_abi_task", noop}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), 99, 0, "bad_abi", "1.0.0", TASKS, 1, 0, 0};
EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return &PLUGIN; }
