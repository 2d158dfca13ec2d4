/* null_descriptor.so: the entry point returns NULL. */
#include <ebats/plugin.h>

EBATS_PLUGIN_EXPORT const ebats_plugin *ebats_plugin_entry(void) { return 0; }
