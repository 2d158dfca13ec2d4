#include "supervisor/plugin_probe.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>

#include "supervisor/child_process.h"
#include "supervisor/frame.h"

namespace ebats {

Result<PluginProbe> probe_plugins(const ChildProgram& program, const std::vector<std::string>& args,
                                  const PluginSettings& settings) {
  sigset_t empty;
  sigemptyset(&empty);
  auto child = ChildProcess::spawn(program, args, empty, "ebats plugin probe");
  if (!child.ok()) return child.status();
  std::string first;
  write_settings_frame(first, settings);
  for (std::string_view left = first; !left.empty();) {  // the parent's end of the socket is non-blocking
    pollfd p{child->socket(), POLLOUT, 0};
    const int ready = ::poll(&p, 1, 30'000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return Status::io("the plugin probe child did not take its settings within 30s");
    const ssize_t n = ::send(child->socket(), left.data(), left.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return Status::io("cannot send the plugin probe child its settings: " + std::string(std::strerror(errno)));
    left.remove_prefix(static_cast<size_t>(n));
  }
  FrameBuffer in(16u << 20);
  for (;;) {
    pollfd p{child->socket(), POLLIN, 0};
    int rc = ::poll(&p, 1, 30'000);
    if (rc <= 0) return Status::io("the plugin probe child did not answer within 30s (a plugin hangs in init?)");
    ssize_t n = in.read_from(child->socket());
    if (n <= 0) {
      std::string how;
      for (int i = 0; i < 100 && !child->try_reap(&how); ++i) ::poll(nullptr, 0, 10);
      return Status::io("the plugin probe child " + (how.empty() ? std::string("closed its socket") : how) +
                        " while loading plugins (a plugin crashes in init?)");
    }
    if (auto f = in.next()) {
      if (f->type != FrameType::ready) continue;
      PluginProbe out;
      if (!read_ready_payload(f->payload, &out)) {
        return Status::internal("malformed READY frame from the plugin probe child");
      }
      child->close_socket();  // the child exits on EOF
      return out;
    }
  }
}

std::vector<std::string> unused_plugin_settings(const PluginSettings& settings,
                                                const std::vector<std::string>& loaded) {
  std::vector<std::string> unused;
  for (const auto& entry : settings) {
    if (std::find(loaded.begin(), loaded.end(), entry.first) == loaded.end()) unused.push_back(entry.first);
  }
  return unused;
}

std::vector<std::string> unhandled_registrations(const Config& config, const std::string& topic,
                                                 const std::vector<std::string>& tasks) {
  const std::set<std::string> have(tasks.begin(), tasks.end());
  std::vector<std::string> missing;
  for (const auto& [event, regs] : config.events) {
    for (const auto& reg : regs) {
      if ((topic.empty() || reg.topic == topic) && have.count(reg.task) == 0) {
        missing.push_back("event '" + event + "' registers task '" + reg.task + "' (topic " + reg.topic + ")");
      }
    }
  }
  for (const auto& [name, source] : config.sources) {
    if (source.task.empty() || (!topic.empty() && source.topic != topic) || have.count(source.task) > 0) continue;
    missing.push_back("source '" + name + "' makes task '" + source.task + "' (topic " + source.topic + ")");
  }
  return missing;
}

}  // namespace ebats
