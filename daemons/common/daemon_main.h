// The main() of each daemon: wires config, broker, signals and the loop
// together and maps the final Status to an exit code. No exception escapes.
#pragma once

#include "daemon_cli.h"

namespace ebats {

int worker_main(int argc, char** argv, DaemonKind kind);
int scheduler_main(int argc, char** argv);

}  // namespace ebats
