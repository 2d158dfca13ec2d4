/* missing_symbol.so: a shared library without ebats_plugin_entry (the author forgot EBATS_PLUGIN_EXPORT). */
#include <ebats/plugin.h>

static int noop(const ebats_task_ctx *ctx, void *state) { (void)ctx; (void)state; return EBATS_OK; }
static const ebats_task_def TASKS[] = {{"missing_symbol_task", noop}};
static const ebats_plugin PLUGIN = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "missing_symbol", "1.0.0",
                                    TASKS, 1, 0, 0};
/* Exported under another name, so the library has a dynamic symbol table but no entry point. */
__attribute__((visibility("default"))) const ebats_plugin *plugin_entry_with_a_typo(void) { return &PLUGIN; }
