// init_order.so: EBATS_PLUGIN_INIT placed AFTER EBATS_PLUGIN still runs (the
// SDK finds the hook when the template is instantiated), and the hook sees
// the configuration text.
#include <string>

#include <ebats/plugin.hpp>

namespace {
std::string g_config;  // what init saw; reported by the "config" task
}

EBATS_PLUGIN("init_order", "2.0", {"init_order_config", [](ebats::Task& t) { t.message("config=" + g_config); }})

static bool remember_config(const ebats_host*, std::string_view config) {
  if (config.find("\"refuse\"") != std::string_view::npos) return false;
  g_config = std::string(config);
  return true;
}
EBATS_PLUGIN_INIT(remember_config)
