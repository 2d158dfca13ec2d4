// ebats-dtask-worker: runs the delayed tasks and retries of one topic. See docs/CLI.md.
#include "common/daemon_main.h"

int main(int argc, char** argv) { return ebats::worker_main(argc, argv, ebats::DaemonKind::dtask_worker); }
