// ebats-scheduler: routes events into tasks. See docs/CLI.md.
#include "common/daemon_main.h"

int main(int argc, char** argv) { return ebats::scheduler_main(argc, argv); }
