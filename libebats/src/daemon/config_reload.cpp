#include "daemon/config_reload.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <tuple>

namespace ebats {
namespace {

bool same_sqlite(const SqliteConfig& a, const SqliteConfig& b) {
  return std::tie(a.synchronous_full, a.sync_progress, a.busy_timeout_ms, a.poll_interval_ms, a.lease_ms,
                  a.claim_batch) == std::tie(b.synchronous_full, b.sync_progress, b.busy_timeout_ms,
                                             b.poll_interval_ms, b.lease_ms, b.claim_batch);
}

bool same_amqp(const AmqpConfig& a, const AmqpConfig& b) {
  return std::tie(a.prefix, a.heartbeat_ms, a.connect_timeout_ms, a.confirm_timeout_ms, a.consumer_timeout_ms,
                  a.delay_levels, a.delay_unit_ms, a.delivery_limit, a.results_stream, a.results_max_age_ms,
                  a.reconnect_min_ms, a.reconnect_max_ms, a.tls.ca_file, a.tls.cert_file, a.tls.key_file,
                  a.tls.verify_peer, a.tls.verify_hostname) ==
         std::tie(b.prefix, b.heartbeat_ms, b.connect_timeout_ms, b.confirm_timeout_ms, b.consumer_timeout_ms,
                  b.delay_levels, b.delay_unit_ms, b.delivery_limit, b.results_stream, b.results_max_age_ms,
                  b.reconnect_min_ms, b.reconnect_max_ms, b.tls.ca_file, b.tls.cert_file, b.tls.key_file,
                  b.tls.verify_peer, b.tls.verify_hostname);
}

bool same_sources(const std::map<std::string, SourceConfig>& a, const std::map<std::string, SourceConfig>& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    const SourceConfig& x = i->second;
    const SourceConfig& y = j->second;
    if (std::tie(i->first, x.exchange, x.exchange_type, x.bindings, x.task, x.topic, x.event, x.routing_key_param,
                 x.header_params) != std::tie(j->first, y.exchange, y.exchange_type, y.bindings, y.task, y.topic,
                                              y.event, y.routing_key_param, y.header_params)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string reload_fingerprint(const Config& config) {
  std::string out;
  std::ifstream in(config.path, std::ios::binary);
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::vector<std::string> entries;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(config.plugins_dir, ec)) {
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0) continue;
    entries.push_back(entry.path().filename().string() + " " + std::to_string(st.st_ino) + " " +
                      std::to_string(st.st_size) + " " + std::to_string(st.st_ctim.tv_sec) + "." +
                      std::to_string(st.st_ctim.tv_nsec));
  }
  std::sort(entries.begin(), entries.end());
  for (const auto& e : entries) out += "\n" + e;
  return out;
}

ConfigReload reload_config(const Config& running) {
  ConfigReload out;
  ConfigLoad load = load_config(running.path);
  if (!load.config) {
    for (const auto& e : load.errors) out.errors.push_back(e.to_string());
    if (out.errors.empty()) out.errors.push_back(running.path + ": error: the config could not be loaded");
    return out;
  }
  auto next = std::make_shared<Config>(*load.config);
  if (next->broker_url != running.broker_url || !same_sqlite(next->sqlite, running.sqlite) ||
      !same_amqp(next->amqp, running.amqp) || next->broker_password_file != running.broker_password_file) {
    out.restart_needed.push_back("broker");
    next->broker_url = running.broker_url;
    next->sqlite = running.sqlite;
    next->amqp = running.amqp;
    next->broker_password_file = running.broker_password_file;
  }
  if (next->max_message_bytes != running.max_message_bytes) {
    out.restart_needed.push_back("limits.max_message_bytes");
    next->max_message_bytes = running.max_message_bytes;
    next->result_message_bytes = std::min(next->result_message_bytes, next->max_message_bytes);
  }
  if (next->metrics_listen != running.metrics_listen) {
    out.restart_needed.push_back("metrics.listen");
    next->metrics_listen = running.metrics_listen;
  }
  if (!same_sources(next->sources, running.sources)) {
    out.restart_needed.push_back("sources");
    next->sources = running.sources;
  }
  out.config = std::move(next);
  return out;
}

}  // namespace ebats
