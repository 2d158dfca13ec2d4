// ebatsctl events and plugins: the registrations of the config and the
// plugins that handle them, as a worker child loads them (probe_plugins).
#include <algorithm>
#include <iomanip>
#include <iostream>

#include "ctl.h"
#include "ebats/duration.h"

namespace ebatsctl {
namespace {

bool parse_json_flag(const std::string& command, const std::vector<std::string>& argv, bool* json,
                     std::optional<int>* error) {
  for (const auto& a : argv) {
    if (a == "--json") {
      *json = true;
    } else {
      *error = usage_error(command + ": unknown argument '" + a + "'");
      return false;
    }
  }
  return true;
}

}  // namespace

int cmd_events(const Context& ctx, const std::vector<std::string>& argv) {
  bool json = false;
  std::optional<int> error;
  if (!parse_json_flag("events", argv, &json, &error)) return *error;
  const ebats::Config& config = *ctx.config;
  auto probe = probe_plugins(ctx);
  if (!probe.ok()) {
    std::cerr << "ebatsctl: warning: cannot tell which tasks have a handler: " << probe.status().message() << "\n";
  }
  // "yes", "no", or "?" when the plugins could not be loaded.
  auto handled = [&](const std::string& task) -> std::string {
    if (!probe.ok()) return "?";
    return std::binary_search(probe->tasks.begin(), probe->tasks.end(), task) ? "yes" : "no";
  };
  if (json) {
    print_json([&](ebats::json::Writer& w) {
      w.StartArray();
      for (const auto& [event, regs] : config.events) {
        for (const auto& r : regs) {
          w.StartObject();
          w.Key("event");
          ebats::json::write_string(w, event);
          w.Key("task");
          ebats::json::write_string(w, r.task);
          w.Key("topic");
          ebats::json::write_string(w, r.topic);
          w.Key("delay_ms");
          w.Int64(r.delay_ms);
          w.Key("handled");  // null: the plugins could not be loaded
          if (probe.ok()) {
            w.Bool(handled(r.task) == "yes");
          } else {
            w.Null();
          }
          w.EndObject();
        }
      }
      w.EndArray();
    });
    return kOk;
  }
  if (config.events.empty()) {
    std::cout << "no events registered in " << config.path << "\n";
    return kOk;
  }
  std::cout << std::left << std::setw(24) << "EVENT" << std::setw(24) << "TASK" << std::setw(16) << "TOPIC"
            << std::setw(10) << "DELAY" << "HANDLER\n";
  for (const auto& [event, regs] : config.events) {
    for (const auto& r : regs) {
      std::cout << std::left << std::setw(24) << event << std::setw(24) << r.task << std::setw(16) << r.topic
                << std::setw(10) << (r.delay_ms > 0 ? ebats::format_duration(std::chrono::milliseconds(r.delay_ms))
                                                    : std::string("-"))
                << handled(r.task) << "\n";
    }
  }
  if (probe.ok()) {
    std::cout << "(HANDLER: whether a plugin in " << config.plugins_dir
              << " handles the task; a worker of the topic refuses to start while one does not)\n";
  }
  return kOk;
}

int cmd_plugins(const Context& ctx, const std::vector<std::string>& argv) {
  bool json = false;
  std::optional<int> error;
  if (!parse_json_flag("plugins", argv, &json, &error)) return *error;
  auto probe = probe_plugins(ctx);
  if (!probe.ok()) return report(probe.status());
  // Of plugin i: its version, ABI and file, "-" from a worker too old to say.
  auto detail = [](const std::vector<std::string>& list, size_t i) {
    return i < list.size() ? list[i] : std::string("-");
  };
  if (json) {
    print_json([&](ebats::json::Writer& w) {
      w.StartObject();
      w.Key("dir");
      ebats::json::write_string(w, ctx.config->plugins_dir);
      w.Key("plugins");
      w.StartArray();
      for (size_t i = 0; i < probe->plugins.size(); ++i) {
        w.StartObject();
        const std::pair<const char*, std::string> fields[] = {{"name", probe->plugins[i]},
                                                              {"version", detail(probe->versions, i)},
                                                              {"abi", detail(probe->abis, i)},
                                                              {"file", detail(probe->files, i)}};
        for (const auto& [key, value] : fields) {
          w.Key(key);
          ebats::json::write_string(w, value);
        }
        w.EndObject();
      }
      w.EndArray();
      for (const auto& [key, list] : {std::pair<const char*, const std::vector<std::string>*>{"tasks", &probe->tasks},
                                      {"refused", &probe->errors}}) {
        w.Key(key);
        w.StartArray();
        for (const auto& s : *list) ebats::json::write_string(w, s);
        w.EndArray();
      }
      w.EndObject();
    });
  } else {
    std::cout << "plugins in " << ctx.config->plugins_dir << ": " << probe->plugins.size() << " loaded\n";
    std::cout << std::left << "  " << std::setw(20) << "NAME" << std::setw(12) << "VERSION" << std::setw(6) << "ABI"
              << "FILE\n";
    for (size_t i = 0; i < probe->plugins.size(); ++i) {
      std::cout << "  " << std::setw(20) << probe->plugins[i] << std::setw(12) << detail(probe->versions, i)
                << std::setw(6) << detail(probe->abis, i) << detail(probe->files, i) << "\n";
    }
    std::cout << "tasks handled: " << probe->tasks.size() << "\n";
    for (const auto& t : probe->tasks) std::cout << "  " << t << "\n";
    if (!probe->errors.empty()) {
      std::cout << "refused: " << probe->errors.size() << "\n";
      for (const auto& e : probe->errors) std::cout << "  " << e << "\n";
    }
  }
  return probe->errors.empty() ? kOk : kFailure;
}

}  // namespace ebatsctl
