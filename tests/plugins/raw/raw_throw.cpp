// raw_throw.so: a C++ plugin that skips the SDK and lets exceptions escape its
// handlers (undefined behaviour across a C ABI in theory; the task runner
// catches what it can). Only the unit tests of the task runner load it.
// shutdown() leaves a trace so tests can check that the registry calls it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <ebats/plugin.h>

namespace {

int throw_std(const ebats_task_ctx*, void*) { throw std::runtime_error("raw boom"); }
int throw_int(const ebats_task_ctx*, void*) { throw 42; }
int return_code(const ebats_task_ctx*, void*) { return 9; }
int retry_with_hints(const ebats_task_ctx* ctx, void* state) {
  const auto* host = static_cast<const ebats_host*>(state);
  host->retry_after(ctx, UINT64_MAX);  // far beyond the 7-day clamp
  host->retry_limit(ctx, 4);
  return EBATS_RETRY;
}
int ok_after_hints(const ebats_task_ctx* ctx, void* state) {
  const auto* host = static_cast<const ebats_host*>(state);
  host->retry_after(ctx, 1000);  // ignored: the handler succeeds
  return EBATS_OK;
}

// Appends "shutdown\n" to $EBATS_TEST_SHUTDOWN_RECORD, so tests can count shutdown() calls.
void shutdown(void*) {
  const char* path = std::getenv("EBATS_TEST_SHUTDOWN_RECORD");
  if (path == nullptr) return;
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const char line[] = "shutdown\n";
  [[maybe_unused]] const ssize_t n = ::write(fd, line, std::strlen(line));
  ::close(fd);
}

int init(const ebats_host* host, const char*, size_t, void** plugin_state) {
  *plugin_state = const_cast<ebats_host*>(host);
  return 0;
}

const ebats_task_def kTasks[] = {{"raw_throw_std", throw_std},
                                 {"raw_throw_int", throw_int},
                                 {"raw_return_9", return_code},
                                 {"raw_retry_hints", retry_with_hints},
                                 {"raw_ok_after_hints", ok_after_hints}};
const ebats_plugin kPlugin = {sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, "raw_throw", "1.0.0",
                              kTasks, sizeof kTasks / sizeof kTasks[0], init, shutdown};

}  // namespace

extern "C" EBATS_PLUGIN_EXPORT const ebats_plugin* ebats_plugin_entry(void) { return &kPlugin; }
