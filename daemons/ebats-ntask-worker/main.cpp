// ebats-ntask-worker: runs the due-now tasks of one topic. See docs/CLI.md.
#include "common/daemon_main.h"

int main(int argc, char** argv) { return ebats::worker_main(argc, argv, ebats::DaemonKind::ntask_worker); }
