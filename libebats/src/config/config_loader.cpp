// load_config(): YAML text -> validated, path-resolved, immutable Config.
//
// The schema is checked section by section; every problem is collected as a
// Diagnostic (see yaml_fields.h) and a Config is returned only when there is
// none. Sections are read in dependency order (defaults before workers and
// events), whatever their order in the file.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>

#include "broker/amqp/amqp_url.h"
#include "config/yaml_fields.h"
#include "config/yaml_json.h"
#include "ebats/duration.h"
#include "ebats/config.h"
#include "ebats/envelope.h"
#include "metrics/http_server.h"

namespace ebats {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxRetries = 100'000;
constexpr int64_t kMaxProcesses = 256;
constexpr int64_t kMaxPrefetch = 100'000;
constexpr int64_t kMaxClaimBatch = 10'000;
constexpr uint64_t kMinMessageBytes = 1024;
constexpr int64_t kMaxDelayLevels = 32;
constexpr int64_t kMaxDeliveryLimit = 1000;
constexpr int64_t kMinResultsKeepMs = 1000;
constexpr int64_t kMaxResultsKeepRows = int64_t{1} << 62;
constexpr std::string_view kSqliteScheme = "sqlite://";

// The name rules are the wire format's (ebats/envelope.h, docs/WIRE.md); the
// texts below explain them in config errors.
const char* const kEventNameRule = "use 1 to 128 characters from A-Z a-z 0-9 _ . : -";
const char* const kTopicNameRule = "use 1 to 64 characters from A-Z a-z 0-9 _ -";

// Reads one config document into a Config, reporting into a DiagnosticList.
class ConfigParser {
 public:
  ConfigParser(fs::path base_dir, DiagnosticList& diagnostics)
      : base_dir_(std::move(base_dir)), d_(diagnostics) {}

  void parse(const YAML::Node& root, Config& config) {
    if (!root.IsDefined() || root.IsNull()) {
      d_.error_without_position(
          "the file is empty; expected a map with at least broker.url and plugins.dir (see docs/CONFIG.md)");
      return;
    }
    if (!root.IsMap()) {
      d_.error(root.Mark(), "expected a map at the top level, found " + describe_node(root) +
                                "; e.g. broker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}");
      return;
    }
    const MapFields top(root, "",
                        {"version", "broker", "plugins", "results", "limits", "defaults", "events", "workers",
                         "sources", "metrics"},
                        d_, {"logging", "retention"});
    if (const Field* f = top.find("version")) parse_version(*f);
    if (const Field* f = top.find("broker")) {
      parse_broker(*f, config);
    } else {
      d_.error(root.Mark(), "missing required key 'broker'; add broker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}");
    }
    if (const Field* f = top.find("plugins")) {
      parse_plugins(*f, config);
    } else {
      d_.error(root.Mark(), "missing required key 'plugins'; add plugins: {dir: /usr/lib/ebats/plugins}");
    }
    if (const Field* f = top.find("results")) parse_results(*f, config);
    if (const Field* f = top.find("limits")) parse_limits(*f, config);
    if (const Field* f = top.find("defaults")) parse_defaults(*f, config);
    if (const Field* f = top.find("workers")) parse_workers(*f, config);
    if (const Field* f = top.find("events")) parse_events(*f, config);
    if (const Field* f = top.find("sources")) parse_sources(*f, config);
    if (const Field* f = top.find("metrics")) parse_metrics(*f, config);
    check_delayed_hold(root.Mark(), config);
  }

 private:
  // metrics: {listen: {scheduler: "127.0.0.1:9464", "ntask-worker@demo": "127.0.0.1:9465"}}
  void parse_metrics(const Field& f, Config& config) {
    if (!check_map(f, true, "metrics: {listen: {scheduler: \"127.0.0.1:9464\"}}", d_)) return;
    const MapFields fields(f.value, f.path, {"listen"}, d_);
    const Field* listen = fields.find("listen");
    if (!listen || !check_map(*listen, true, "listen: {scheduler: \"127.0.0.1:9464\"}", d_)) return;
    const MapFields daemons(listen->value, listen->path, {}, d_);
    for (const Field& daemon : daemons.all()) {
      const std::string name = daemon.name();
      const size_t at = name.find('@');
      const std::string kind = name.substr(0, at);
      const bool worker = at != std::string::npos && (kind == "ntask-worker" || kind == "dtask-worker") &&
                          is_valid_topic(name.substr(at + 1));
      if (name != "scheduler" && !worker) {
        d_.error(daemon.key_mark(), "metrics.listen: '" + name +
                                        "' names no daemon; use scheduler, ntask-worker@TOPIC or dtask-worker@TOPIC");
        continue;
      }
      std::optional<std::string> text = read_string(daemon, d_);
      if (!text) continue;
      auto address = metrics::parse_listen_address(*text);
      if (!address.ok()) {
        d_.error(daemon.mark(), daemon.path + ": " + address.status().message());
        continue;
      }
      config.metrics_listen[name] = *text;
    }
  }

  void parse_version(const Field& f) {
    const std::optional<int64_t> v = read_integer(f, 0, INT32_MAX, d_);
    if (v && *v != 1) {
      d_.error(f.mark(), "unsupported config version " + std::to_string(*v) + "; this build reads version 1");
    }
  }

  void parse_broker(const Field& f, Config& config) {
    if (!check_map(f, false, "broker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}", d_)) return;
    const MapFields fields(f.value, f.path, {"url", "sqlite", "amqp", "password_file"}, d_, {"password_credential"});
    if (const Field* url = fields.find("url")) {
      if (std::optional<std::string> text = read_string(*url, d_)) parse_broker_url(*url, *text, config);
    } else {
      d_.error(f.mark(), "missing broker.url; add url: \"sqlite:///var/lib/ebats/ebats.db\"");
    }
    const bool amqp = config.is_amqp();
    if (const Field* sqlite = fields.find("sqlite")) {
      parse_sqlite(*sqlite, config.sqlite);
      if (amqp) d_.warning(sqlite->key_mark(), "broker.sqlite is ignored: broker.url is an AMQP URL");
    }
    if (const Field* section = fields.find("amqp")) {
      parse_amqp(*section, config.amqp);
      if (!amqp && !config.broker_url.empty()) {
        d_.warning(section->key_mark(), "broker.amqp is ignored: broker.url is not an amqp:// or amqps:// URL");
      }
    }
    if (const Field* file = fields.find("password_file")) {
      if (std::optional<std::string> text = read_string(*file, d_)) {
        if (text->empty()) {
          d_.error(file->mark(), "broker.password_file is empty; give the path of a file holding the password");
        } else {
          config.broker_password_file = resolve(*text);
        }
      }
      if (!amqp && !config.broker_url.empty()) {
        d_.warning(file->key_mark(), "broker.password_file is ignored: only AMQP brokers take a password");
      }
    }
  }

  void parse_broker_url(const Field& f, const std::string& url, Config& config) {
    const size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
      // Not echoed: a mistyped AMQP URL may hold a password.
      d_.error(f.mark(), "broker.url has no scheme; expected sqlite:///absolute/path.db, "
                         "sqlite://path/relative/to/config.db or amqp://user@host:5672/vhost");
      return;
    }
    const std::string scheme = url.substr(0, scheme_end);
    if (scheme == "amqp" || scheme == "amqps") {
      // Only the scheme is echoed: the rest may hold a password.
      auto endpoint = amqp::parse_amqp_url(url);
      if (!endpoint.ok()) {
        d_.error(f.mark(), "broker.url: " + endpoint.status().message());
        return;
      }
      config.broker_url = url;
      return;
    }
    if (scheme != "sqlite") {
      d_.error(f.mark(), "unsupported broker URL scheme '" + scheme + "://'; use sqlite:///var/lib/ebats/ebats.db, "
                         "amqp://user@host:5672/vhost or amqps://user@host:5671/vhost");
      return;
    }
    const std::string path = url.substr(kSqliteScheme.size());
    if (path.empty() || path.back() == '/') {
      d_.error(f.mark(), "broker.url '" + url + "' names no database file; e.g. sqlite:///var/lib/ebats/ebats.db");
      return;
    }
    config.broker_url = std::string(kSqliteScheme) + resolve(path);
  }

  void parse_amqp(const Field& f, AmqpConfig& amqp) {
    if (!check_map(f, true, "amqp: {heartbeat: 30s, delay_unit: 1s}", d_)) return;
    const MapFields fields(f.value, f.path,
                           {"prefix", "heartbeat", "connect_timeout", "confirm_timeout", "consumer_timeout",
                            "delay_levels", "delay_unit", "delivery_limit", "results_stream", "results_max_age", "reconnect",
                            "tls"},
                           d_);
    if (const Field* prefix = fields.find("prefix")) {
      if (std::optional<std::string> text = read_string(*prefix, d_)) {
        if (is_valid_topic(*text)) {
          amqp.prefix = *text;
        } else {
          d_.error(prefix->mark(), "broker.amqp.prefix '" + *text + "' is not a valid name prefix; " + kTopicNameRule);
        }
      }
    }
    read_duration_into(fields, "heartbeat", 0, amqp.heartbeat_ms);
    if (amqp.heartbeat_ms > 0 && amqp.heartbeat_ms < 1000) {
      d_.error(fields.find("heartbeat")->mark(), "broker.amqp.heartbeat: AMQP counts heartbeats in whole seconds; "
                                                 "give at least 1s, or 0s to turn them off");
    }
    read_duration_into(fields, "connect_timeout", 1, amqp.connect_timeout_ms);
    read_duration_into(fields, "confirm_timeout", 1, amqp.confirm_timeout_ms);
    read_duration_into(fields, "consumer_timeout", 1, amqp.consumer_timeout_ms);
    if (const Field* levels = fields.find("delay_levels")) {
      if (auto v = read_integer(*levels, 1, kMaxDelayLevels, d_)) amqp.delay_levels = static_cast<uint32_t>(*v);
    }
    read_duration_into(fields, "delay_unit", 1, amqp.delay_unit_ms);
    for (const char* key : {"delay_unit", "consumer_timeout"}) {
      if (const Field* given = fields.find(key); given != nullptr && !hold_mark_) hold_mark_ = given->mark();
    }
    if (const Field* limit = fields.find("delivery_limit")) {
      if (auto v = read_integer(*limit, 0, kMaxDeliveryLimit, d_)) amqp.delivery_limit = static_cast<uint32_t>(*v);
    }
    if (const Field* stream = fields.find("results_stream")) {
      if (std::optional<bool> b = read_bool(*stream, d_)) amqp.results_stream = *b;
    }
    read_duration_into(fields, "results_max_age", 0, amqp.results_max_age_ms);
    if (const Field* reconnect = fields.find("reconnect")) {
      if (check_map(*reconnect, true, "reconnect: {min: 500ms, max: 30s}", d_)) {
        const MapFields r(reconnect->value, reconnect->path, {"min", "max"}, d_);
        read_duration_into(r, "min", 1, amqp.reconnect_min_ms);
        read_duration_into(r, "max", 1, amqp.reconnect_max_ms);
        if (amqp.reconnect_max_ms < amqp.reconnect_min_ms) {
          d_.error(reconnect->mark(), "broker.amqp.reconnect: max is below min");
        }
      }
    }
    if (const Field* tls = fields.find("tls")) parse_tls(*tls, amqp.tls);
  }

  void parse_tls(const Field& f, AmqpTlsConfig& tls) {
    if (!check_map(f, true, "tls: {ca_file: /etc/ebats/ca.pem}", d_)) return;
    const MapFields fields(f.value, f.path, {"ca_file", "cert_file", "key_file", "verify_peer", "verify_hostname"},
                           d_);
    const std::pair<const char*, std::string*> files[] = {
        {"ca_file", &tls.ca_file}, {"cert_file", &tls.cert_file}, {"key_file", &tls.key_file}};
    for (const auto& [key, out] : files) {
      if (const Field* file = fields.find(key)) {
        if (std::optional<std::string> text = read_string(*file, d_)) {
          if (text->empty()) {
            d_.error(file->mark(), file->path + " is empty; give a path or remove the key");
          } else {
            *out = resolve(*text);
          }
        }
      }
    }
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      d_.error(f.mark(), "broker.amqp.tls: cert_file and key_file go together; give both or neither");
    }
    if (const Field* v = fields.find("verify_peer")) {
      if (std::optional<bool> b = read_bool(*v, d_)) tls.verify_peer = *b;
    }
    if (const Field* v = fields.find("verify_hostname")) {
      if (std::optional<bool> b = read_bool(*v, d_)) tls.verify_hostname = *b;
    }
  }

  void parse_sqlite(const Field& f, SqliteConfig& sqlite) {
    if (!check_map(f, true, "sqlite: {synchronous: full, busy_timeout: 5s}", d_)) return;
    const MapFields fields(f.value, f.path, {"synchronous", "sync_progress", "busy_timeout", "poll_interval", "lease",
                                                        "claim_batch"},
                           d_);
    if (const Field* sync = fields.find("synchronous")) {
      if (std::optional<std::string> mode = read_string(*sync, d_)) {
        if (*mode == "full" || *mode == "normal") {
          sqlite.synchronous_full = *mode == "full";
        } else {
          d_.error(sync->mark(), sync->path + ": expected 'full' or 'normal', found '" + *mode + "'");
        }
      }
    }
    if (const Field* progress = fields.find("sync_progress")) {
      if (std::optional<bool> value = read_bool(*progress, d_)) sqlite.sync_progress = *value;
    }
    read_duration_into(fields, "busy_timeout", 0, sqlite.busy_timeout_ms);
    read_duration_into(fields, "poll_interval", 1, sqlite.poll_interval_ms);
    read_duration_into(fields, "lease", 1, sqlite.lease_ms);
    if (const Field* batch = fields.find("claim_batch")) {
      if (auto v = read_integer(*batch, 1, kMaxClaimBatch, d_)) sqlite.claim_batch = static_cast<uint32_t>(*v);
    }
  }

  void parse_plugins(const Field& f, Config& config) {
    if (!check_map(f, false, "plugins: {dir: /usr/lib/ebats/plugins}", d_)) return;
    const MapFields fields(f.value, f.path, {"dir", "settings"}, d_);
    if (const Field* dir = fields.find("dir")) {
      if (std::optional<std::string> text = read_string(*dir, d_)) {
        if (text->empty()) {
          d_.error(dir->mark(), "plugins.dir is empty; give a folder, e.g. /usr/lib/ebats/plugins");
        } else {
          config.plugins_dir = resolve(*text);
        }
      }
    } else {
      d_.error(f.mark(), "missing plugins.dir; add dir: /usr/lib/ebats/plugins");
    }
    // Per plugin, one map, handed to its init() as a JSON object. They all go
    // to each worker child in one frame, so together they have a budget.
    if (const Field* settings = fields.find("settings")) {
      if (!check_map(*settings, true, "settings: {shop: {db_dsn_file: /etc/ebats/shop.dsn}}", d_)) return;
      const MapFields plugins(settings->value, settings->path, {}, d_);
      size_t used = 0;
      for (const Field& plugin : plugins.all()) {
        if (!check_map(plugin, true, "settings: {" + plugin.name() + ": {key: value}}", d_)) continue;
        const size_t left = kMaxPluginSettingsBytes - std::min(kMaxPluginSettingsBytes, used + plugin.name().size());
        const YamlJson json = plugin.is_null() ? YamlJson{"{}", "", {}} : yaml_to_json(plugin.value, left);
        if (json.too_large) {
          d_.error(plugin.mark(), plugin.path + ": the plugin settings take more than " +
                                      std::to_string(kMaxPluginSettingsBytes) +
                                      " bytes as JSON (all plugins together); put large data in a file and give its path");
          continue;
        }
        if (!json.ok()) {
          d_.error(json.mark, plugin.path + ": " + json.error);
          continue;
        }
        used += plugin.name().size() + json.json.size();
        config.plugin_settings[plugin.name()] = json.json;
      }
    }
  }

  void parse_results(const Field& f, Config& config) {
    if (!check_map(f, true, "results: {file: /var/log/ebats/results.jsonl}", d_)) return;
    const MapFields fields(f.value, f.path, {"file", "keep", "keep_rows"}, d_, {"broker", "hooks", "fsync"});
    if (const Field* file = fields.find("file")) {
      if (std::optional<std::string> text = read_string(*file, d_)) {
        if (text->empty()) {
          d_.error(file->mark(), "results.file is empty; give a path or remove the key");
        } else {
          config.results_file = resolve(*text);
        }
      }
    }
    // A shorter window would prune rows about as soon as they are committed.
    if (const Field* keep = fields.find("keep")) {
      if (auto ms = read_duration_ms(*keep, kMinResultsKeepMs, d_)) config.results_keep_ms = *ms;
    }
    if (const Field* rows = fields.find("keep_rows")) {
      if (auto v = read_integer(*rows, 1, kMaxResultsKeepRows, d_)) config.results_keep_rows = static_cast<uint64_t>(*v);
    }
    if (config.is_amqp() && (fields.find("keep") || fields.find("keep_rows"))) {
      const Field* key = fields.find("keep") ? fields.find("keep") : fields.find("keep_rows");
      d_.warning(key->key_mark(), key->path + " is ignored: RabbitMQ keeps no results table (the results stream "
                                              "keeps records for broker.amqp.results_max_age)");
    }
  }

  void parse_limits(const Field& f, Config& config) {
    if (!check_map(f, true, "limits: {max_message_bytes: 1MiB}", d_)) return;
    const MapFields fields(f.value, f.path, {"max_message_bytes", "result_message_bytes"}, d_,
                           {"result_params_bytes"});
    if (const Field* max = fields.find("max_message_bytes")) {
      if (auto v = read_size(*max, kMinMessageBytes, d_)) config.max_message_bytes = *v;
    }
    if (const Field* result = fields.find("result_message_bytes")) {
      if (auto v = read_size(*result, 0, d_)) config.result_message_bytes = *v;
      // A handler's message reaches the worker in one frame of at most
      // max_message_bytes + 64 KiB: a longer one would get its child killed.
      if (config.result_message_bytes > config.max_message_bytes) {
        d_.error(result->mark(), result->path + ": " + std::to_string(config.result_message_bytes) +
                                     " bytes is more than limits.max_message_bytes (" +
                                     std::to_string(config.max_message_bytes) +
                                     " bytes): a handler's message must fit in one message");
      }
    }
  }

  void parse_defaults(const Field& f, Config& config) {
    if (!check_map(f, true, "defaults: {timeout: 60s, retry: {max: 5}}", d_)) return;
    const MapFields fields(f.value, f.path, {"timeout", "retry"}, d_);
    read_duration_into(fields, "timeout", 1, config.default_timeout_ms);
    if (const Field* retry = fields.find("retry")) {
      if (auto policy = parse_retry(*retry, RetryPolicy::original())) config.default_retry = *policy;
    }
  }

  // `retry: {max: N, backoff: [...]}` or `backoff: {exponential: 1s, max: 1h, jitter: 20%}`;
  // a key left out keeps its value from `base`.
  std::optional<RetryPolicy> parse_retry(const Field& f, const RetryPolicy& base) {
    if (!check_map(f, false, "retry: {max: 5, backoff: [5s, 5m, 10m, 1h, 2h10m]}", d_)) return std::nullopt;
    const MapFields fields(f.value, f.path, {"max", "backoff", "exponential", "jitter"}, d_);
    RetryPolicy policy = base;
    bool ok = true;
    for (const char* misplaced : {"exponential", "jitter"}) {
      if (const Field* m = fields.find(misplaced)) {
        d_.error(m->key_mark(), f.path + ": '" + misplaced + "' goes inside backoff; e.g. backoff: {exponential: 1s, "
                                          "max: 1h, jitter: 20%}");
        ok = false;
      }
    }
    if (const Field* max = fields.find("max")) {
      if (auto v = read_integer(*max, 0, kMaxRetries, d_)) {
        policy.max_retries = static_cast<uint32_t>(*v);
      } else {
        ok = false;
      }
    }
    const Field* backoff = fields.find("backoff");
    if (backoff != nullptr && backoff->value.IsMap()) {
      ok &= parse_exponential(*backoff, policy);
    } else if (backoff != nullptr) {
      if (check_list(*backoff, "backoff: [5s, 5m, 10m, 1h, 2h10m] or backoff: {exponential: 1s, max: 1h, jitter: 20%}",
                     d_)) {
        policy.jitter_pct = 0;
        policy.backoff_ms.clear();
        for (size_t i = 0; i < backoff->value.size(); ++i) {
          const Field item{backoff->path + "[" + std::to_string(i) + "]", YAML::Node(), backoff->value[i]};
          if (auto ms = read_duration_ms(item, 0, d_)) {
            policy.backoff_ms.push_back(*ms);
          } else {
            ok = false;
          }
        }
        if (ok && policy.backoff_ms.empty() && policy.max_retries > 0) {
          d_.error(backoff->mark(), backoff->path + ": the list is empty but max is " +
                                        std::to_string(policy.max_retries) +
                                        "; give at least one delay, e.g. [5s], or set max: 0");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return policy;
  }

  // `backoff: {exponential: BASE, max: MAX, jitter: P%}` -> the list BASE, 2 BASE, ... MAX and jitter P.
  bool parse_exponential(const Field& f, RetryPolicy& policy) {
    const char* const example = "backoff: {exponential: 1s, max: 1h, jitter: 20%}";
    const MapFields fields(f.value, f.path, {"exponential", "max", "jitter"}, d_);
    bool ok = true;
    std::optional<int64_t> base;
    std::optional<int64_t> max;
    if (const Field* e = fields.find("exponential")) {
      base = read_duration_ms(*e, 1, d_);
      ok &= base.has_value();
    } else {
      d_.error(f.mark(), f.path + ": missing exponential (the first delay); e.g. " + example);
      ok = false;
    }
    if (const Field* m = fields.find("max")) {
      max = read_duration_ms(*m, 1, d_);
      ok &= max.has_value();
      if (base && max && *max < *base) {
        d_.error(m->mark(), m->path + ": " + format_duration(Millis(*max)) + " is shorter than exponential (" +
                                format_duration(Millis(*base)) + "); the longest delay must be at least the first");
        ok = false;
      }
    } else {
      d_.error(f.mark(), f.path + ": missing max (the longest delay, where doubling stops); e.g. " + example);
      ok = false;
    }
    uint32_t jitter = 0;
    if (const Field* j = fields.find("jitter")) {
      if (auto pct = read_percent(*j)) {
        jitter = *pct;
      } else {
        ok = false;
      }
    }
    if (!ok) return false;
    policy.backoff_ms = RetryPolicy::exponential_backoff(*base, *max);
    policy.jitter_pct = jitter;
    return true;
  }

  // A whole percentage from 0% to 100%: "20%".
  std::optional<uint32_t> read_percent(const Field& f) {
    const std::string text = f.value.IsScalar() ? f.value.Scalar() : std::string();
    const bool digits = text.size() >= 2 && text.size() <= 4 && text.back() == '%' &&
                        std::all_of(text.begin(), text.end() - 1, [](char c) { return c >= '0' && c <= '9'; });
    if (f.is_null() || !f.value.IsScalar() || !digits) {
      d_.error(f.mark(), f.path + ": expected a whole percentage from 0% to " + std::to_string(kMaxJitterPct) +
                             "%, such as 20%, found " + describe_node(f.value));
      return std::nullopt;
    }
    const uint32_t pct = static_cast<uint32_t>(std::stoul(text.substr(0, text.size() - 1)));
    if (pct > kMaxJitterPct) {
      d_.error(f.mark(), f.path + ": " + text + " is more than " + std::to_string(kMaxJitterPct) +
                             "% (which lets a delay double)");
      return std::nullopt;
    }
    return pct;
  }

  void parse_workers(const Field& f, Config& config) {
    if (!check_map(f, true, "workers: {demo: {processes: 2}}", d_)) return;
    const MapFields topics(f.value, f.path, {}, d_);
    for (const Field& topic : topics.all()) {
      const std::string name = topic.name();
      if (!is_valid_topic(name)) {
        d_.error(topic.key_mark(), "invalid topic name '" + name + "' in workers; " + kTopicNameRule);
        continue;
      }
      if (!check_map(topic, true, "demo: {processes: 2}", d_)) continue;
      const MapFields fields(topic.value, topic.path,
                             {"processes", "prefetch", "timeout", "kill_after", "drain_timeout", "start_timeout",
                              "route_events"},
                             d_,
                             {"ntask", "dtask", "metrics_port"});
      WorkerConfig worker;
      worker.timeout_ms = config.default_timeout_ms;
      if (const Field* processes = fields.find("processes")) {
        if (auto v = read_integer(*processes, 1, kMaxProcesses, d_)) worker.processes = static_cast<uint32_t>(*v);
      }
      if (const Field* prefetch = fields.find("prefetch")) {
        if (auto v = read_integer(*prefetch, 0, kMaxPrefetch, d_)) worker.prefetch = static_cast<uint32_t>(*v);
      }
      read_duration_into(fields, "timeout", 1, worker.timeout_ms);
      read_duration_into(fields, "kill_after", 0, worker.kill_after_ms);
      read_duration_into(fields, "drain_timeout", 0, worker.drain_timeout_ms);
      read_duration_into(fields, "start_timeout", 1, worker.start_timeout_ms);
      if (const Field* route = fields.find("route_events")) {
        if (auto v = read_bool(*route, d_)) worker.route_events = *v;
        if (worker.route_events && config.is_amqp()) {
          d_.error(route->key_mark(), route->path + " needs the SQLite broker (sqlite://): on RabbitMQ, "
                                                    "ebats-scheduler routes the events");
        }
      }
      check_consumer_timeout(topic.mark(), topic.path, worker.timeout_ms, worker.kill_after_ms, config);
      config.workers[name] = worker;
    }
  }

  void parse_events(const Field& f, Config& config) {
    if (!check_map(f, true, "events: {order_create: [{task: closeOrder, topic: demo}]}", d_)) return;
    const MapFields events(f.value, f.path, {}, d_);
    // (event, task, topic) -> line of its first registration, to refuse repeats.
    std::map<std::tuple<std::string, std::string, std::string>, int> seen;
    std::map<std::string, bool> topic_warned;
    for (const Field& event : events.all()) {
      const std::string event_name = event.name();
      if (!is_valid_event_name(event_name)) {
        d_.error(event.key_mark(), "invalid event name '" + event_name + "'; " + kEventNameRule);
        continue;
      }
      if (!check_list(event, event_name + ": [{task: closeOrder, topic: demo}]", d_)) continue;
      if (event.value.size() == 0) {
        d_.warning(event.key_mark(), "event '" + event_name + "' lists no tasks; its events will be dead-lettered "
                                     "as 'no registration'");
        continue;
      }
      std::vector<Registration> registrations;
      for (size_t i = 0; i < event.value.size(); ++i) {
        const Field item{event.path + "[" + std::to_string(i) + "]", YAML::Node(), event.value[i]};
        std::optional<Registration> r = parse_registration(item, config);
        if (!r) continue;
        const auto key = std::make_tuple(event_name, r->task, r->topic);
        const int line = item.mark().line + 1;
        const auto [it, inserted] = seen.emplace(key, line);
        if (!inserted) {
          d_.error(item.mark(), "task '" + r->task + "' on topic '" + r->topic + "' is registered twice for event '" +
                                    event_name + "' (first at line " + std::to_string(it->second) +
                                    "); remove one, their task ids would collide");
          continue;
        }
        if (config.workers.count(r->topic) == 0 && !topic_warned[r->topic]) {
          topic_warned[r->topic] = true;
          d_.warning(item.mark(), "topic '" + r->topic + "' (task '" + r->task + "', event '" + event_name +
                                      "') has no workers entry, so its tasks run only if a worker for it is started; "
                                      "add workers: {" + r->topic + ": {processes: 1}}");
        }
        registrations.push_back(std::move(*r));
      }
      config.events[event_name] = std::move(registrations);
    }
  }

  void parse_sources(const Field& f, Config& config) {
    const char* example =
        "sources: {shzf_order_paied: {exchange: {name: order_fanout, type: topic}, "
        "bindings: [\"*.*.WAIT_SELLER_SEND_GOODS\"], task: {name: orderAsync, topic: demo}}}";
    if (!check_map(f, true, example, d_)) return;
    const MapFields sources(f.value, f.path, {}, d_);
    if (!sources.all().empty() && !config.is_amqp() && !config.broker_url.empty()) {
      d_.error(f.key_mark(), "sources need an amqp:// or amqps:// broker (they consume upstream RabbitMQ exchanges); "
                             "broker.url is " + config.broker_url);
      return;
    }
    for (const Field& source : sources.all()) {
      if (std::optional<SourceConfig> s = parse_source(source, config)) config.sources[s->name] = std::move(*s);
    }
  }

  std::optional<SourceConfig> parse_source(const Field& f, const Config& config) {
    SourceConfig s;
    s.name = f.name();
    bool ok = true;
    if (!is_valid_event_name(s.name)) {
      d_.error(f.key_mark(), "invalid source name '" + s.name + "' (it names the queue ebats consumes); " +
                                 kEventNameRule);
      ok = false;
    } else if (s.name.rfind(config.amqp.prefix + ".", 0) == 0 || s.name.rfind("amq.", 0) == 0) {
      d_.error(f.key_mark(), "source name '" + s.name + "' starts with '" +
                                 (s.name.rfind("amq.", 0) == 0 ? std::string("amq.") : config.amqp.prefix + ".") +
                                 "', which names queues of RabbitMQ or of ebats itself; choose another name");
      ok = false;
    }
    if (!check_map(f, false, "{exchange: {name: order_fanout, type: topic}, bindings: [\"#\"], "
                             "task: {name: orderAsync, topic: demo}}", d_)) {
      return std::nullopt;
    }
    const MapFields fields(f.value, f.path, {"exchange", "bindings", "task", "event", "params"}, d_);
    if (const Field* x = fields.find("exchange")) {
      ok &= parse_source_exchange(*x, s);
    } else {
      d_.error(f.mark(), f.path + ": missing exchange; add exchange: {name: order_fanout, type: topic}");
      ok = false;
    }
    if (const Field* b = fields.find("bindings")) {
      ok &= parse_source_bindings(*b, s);
    } else if (s.exchange_type != "fanout") {
      d_.error(f.mark(), f.path + ": missing bindings (the keys to bind the queue with); e.g. bindings: [\"#\"]");
      ok = false;
    }
    if (s.exchange_type == "fanout") s.bindings = {""};
    const Field* task = fields.find("task");
    const Field* event = fields.find("event");
    if ((task == nullptr) == (event == nullptr)) {
      d_.error(task && event ? event->key_mark() : f.mark(),
               f.path + ": give either task: {name: orderAsync, topic: demo} (each message becomes that task) or "
                        "event: NAME (each message becomes that event, routed through events:), not " +
                   (task ? "both" : "neither"));
      ok = false;
    } else if (task != nullptr) {
      ok &= parse_source_task(*task, config, s);
    } else if (std::optional<std::string> name = read_string(*event, d_)) {
      s.event = *name;
      if (config.events.count(s.event) == 0) {
        d_.error(event->mark(), f.path + ".event: event '" + s.event + "' has no registration under events:, so "
                                "every message would be dead-lettered; register it or use task:");
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Field* p = fields.find("params")) ok &= parse_source_params(*p, s);
    if (!ok) return std::nullopt;
    return s;
  }

  bool parse_source_exchange(const Field& f, SourceConfig& s) {
    if (!check_map(f, false, "exchange: {name: order_fanout, type: topic}", d_)) return false;
    const MapFields fields(f.value, f.path, {"name", "type"}, d_);
    bool ok = true;
    if (const Field* name = fields.find("name")) {
      std::optional<std::string> text = read_string(*name, d_);
      if (text && (!is_valid_event_name(*text) || text->rfind("amq.", 0) == 0)) {
        d_.error(name->mark(), "invalid exchange name '" + *text + "'; " + kEventNameRule + ", not starting with amq.");
        ok = false;
      } else if (text) {
        s.exchange = *text;
      } else {
        ok = false;
      }
    } else {
      d_.error(f.mark(), f.path + ": missing name; e.g. exchange: {name: order_fanout, type: topic}");
      ok = false;
    }
    if (const Field* type = fields.find("type")) {
      std::optional<std::string> text = read_string(*type, d_);
      if (text && *text != "topic" && *text != "direct" && *text != "fanout") {
        d_.error(type->mark(), "unsupported exchange type '" + *text + "'; use topic, direct or fanout");
        ok = false;
      } else if (text) {
        s.exchange_type = *text;
      } else {
        ok = false;
      }
    }
    return ok;
  }

  bool parse_source_bindings(const Field& f, SourceConfig& s) {
    if (!check_list(f, "bindings: [\"*.*.WAIT_SELLER_SEND_GOODS\"]", d_)) return false;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      const Field item{f.path + "[" + std::to_string(i) + "]", YAML::Node(), f.value[i]};
      std::optional<std::string> key = read_string(item, d_);
      if (!key || key->size() > 255) {
        if (key) d_.error(item.mark(), item.path + ": a binding key is at most 255 bytes");
        ok = false;
        continue;
      }
      s.bindings.push_back(*key);
    }
    if (ok && s.bindings.empty() && s.exchange_type != "fanout") {
      d_.error(f.mark(), f.path + ": no binding key, so the queue would receive nothing; e.g. [\"#\"] for every message");
      ok = false;
    }
    return ok;
  }

  bool parse_source_task(const Field& f, const Config& config, SourceConfig& s) {
    if (!check_map(f, false, "task: {name: orderAsync, topic: demo}", d_)) return false;
    const MapFields fields(f.value, f.path, {"name", "topic"}, d_);
    const Field item{f.path, f.key, f.value};
    for (const char* key : {"name", "topic"}) {
      if (fields.find(key) == nullptr) {
        d_.error(f.mark(), f.path + ": missing '" + key + "'; e.g. task: {name: orderAsync, topic: demo}");
        return false;
      }
    }
    bool ok = read_registration_name(item, fields, "name", is_valid_task_name, kEventNameRule, s.task);
    ok &= read_registration_name(item, fields, "topic", is_valid_topic, kTopicNameRule, s.topic);
    if (ok && config.workers.count(s.topic) == 0) {
      d_.warning(f.mark(), "topic '" + s.topic + "' (task '" + s.task + "' of source '" + s.name +
                               "') has no workers entry, so its tasks run only if a worker for it is started; add "
                               "workers: {" + s.topic + ": {processes: 1}}");
    }
    return ok;
  }

  bool parse_source_params(const Field& f, SourceConfig& s) {
    if (!check_map(f, false, "params: {routing_key: _routing_key, headers: {x-shop: _shop}}", d_)) return false;
    const MapFields fields(f.value, f.path, {"routing_key", "headers"}, d_);
    bool ok = true;
    std::set<std::string> members;
    auto member = [&](const Field& at, std::string* out) {
      std::optional<std::string> text = read_string(at, d_);
      if (!text || text->empty() || text->size() > 128) {
        if (text) d_.error(at.mark(), at.path + ": give the params member (1 to 128 bytes) that receives it");
        return false;
      }
      if (!members.insert(*text).second) {
        d_.error(at.mark(), at.path + ": params member '" + *text + "' is named twice");
        return false;
      }
      *out = *text;
      return true;
    };
    if (const Field* key = fields.find("routing_key")) ok &= member(*key, &s.routing_key_param);
    if (const Field* headers = fields.find("headers")) {
      if (!check_map(*headers, true, "headers: {x-shop: _shop}", d_)) return false;
      const MapFields named(headers->value, headers->path, {}, d_);
      for (const Field& h : named.all()) {
        std::string out;
        if (member(h, &out)) {
          s.header_params[h.name()] = out;
        } else {
          ok = false;
        }
      }
    }
    return ok;
  }

  std::optional<Registration> parse_registration(const Field& item, const Config& config) {
    if (!item.value.IsMap()) {
      d_.error(item.mark(), item.path + ": expected a map, found " + describe_node(item.value) +
                                "; e.g. {task: closeOrder, topic: demo, delay: 10s}");
      return std::nullopt;
    }
    const MapFields fields(item.value, item.path, {"task", "topic", "delay", "retry", "timeout"}, d_);
    Registration r;
    r.retry = config.default_retry;
    bool ok = read_registration_name(item, fields, "task", is_valid_task_name, kEventNameRule, r.task);
    ok &= read_registration_name(item, fields, "topic", is_valid_topic, kTopicNameRule, r.topic);
    ok &= read_duration_into(fields, "delay", 0, r.delay_ms);
    ok &= read_duration_into(fields, "timeout", 0, r.timeout_ms);
    if (const Field* retry = fields.find("retry")) {
      if (auto policy = parse_retry(*retry, config.default_retry)) {
        r.retry = *policy;
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    if (r.timeout_ms > 0) {
      check_consumer_timeout(fields.find("timeout")->mark(), item.path, r.timeout_ms,
                             config.worker(r.topic).kill_after_ms, config);
    }
    return r;
  }

  // On RabbitMQ a delivery unacknowledged for longer than the broker's
  // consumer_timeout closes the worker's channel, and every task it holds
  // runs again: a task must be killed before that.
  void check_consumer_timeout(const YAML::Mark& at, const std::string& path, int64_t timeout_ms,
                              int64_t kill_after_ms, const Config& config) {
    if (!config.is_amqp()) return;
    const int64_t longest = timeout_ms + kill_after_ms;
    if (longest < config.amqp.consumer_timeout_ms) return;
    d_.error(at, path + ": timeout + kill_after (" + format_duration(std::chrono::milliseconds(longest)) +
                     ") must stay below broker.amqp.consumer_timeout (" +
                     format_duration(std::chrono::milliseconds(config.amqp.consumer_timeout_ms)) +
                     "), RabbitMQ's consumer_timeout, or RabbitMQ closes the channel of a long task and every task "
                     "it holds runs again; shorten the timeout or raise consumer_timeout in rabbitmq.conf and here");
  }

  // On RabbitMQ a delayed task comes to its worker up to 1.5 x delay_unit
  // before it is due and waits there unacknowledged: that wait and the
  // longest task together must stay below consumer_timeout too.
  void check_delayed_hold(const YAML::Mark& root, const Config& config) {
    if (!config.is_amqp()) return;
    const int64_t hold = config.amqp.hold_ms();
    const int64_t longest = config.longest_task_ms();
    if (longest >= config.amqp.consumer_timeout_ms || hold + longest < config.amqp.consumer_timeout_ms) return;
    d_.error(hold_mark_.value_or(root),
             "broker.amqp.delay_unit: a delayed task waits in its worker for up to 1.5 x delay_unit (" +
                 format_duration(std::chrono::milliseconds(hold)) +
                 ") before it is due, then runs for up to the longest timeout + kill_after (" +
                 format_duration(std::chrono::milliseconds(longest)) +
                 "); together they must stay below broker.amqp.consumer_timeout (" +
                 format_duration(std::chrono::milliseconds(config.amqp.consumer_timeout_ms)) +
                 "), or RabbitMQ closes the worker's channel and every task it holds is counted an attempt; lower "
                 "delay_unit, or raise consumer_timeout in rabbitmq.conf and here");
  }

  // Stores the required name `key` ("task" or "topic") of the registration
  // `item` into `out`. Returns false, with an error, when it is missing, not
  // a string or breaks `valid` (whose rule `rule` explains).
  bool read_registration_name(const Field& item, const MapFields& fields, const std::string& key,
                              bool (*valid)(std::string_view), const char* rule, std::string& out) {
    const Field* field = fields.find(key);
    if (field == nullptr) {
      d_.error(item.mark(), item.path + ": missing '" + key + "'; e.g. {task: closeOrder, topic: demo}");
      return false;
    }
    std::optional<std::string> name = read_string(*field, d_);
    if (!name) return false;
    if (!valid(*name)) {
      d_.error(field->mark(), "invalid " + key + " name '" + *name + "'; " + rule);
      return false;
    }
    out = std::move(*name);
    return true;
  }

  // Stores the duration `key` of `fields` into `out` when present and valid.
  // Returns false only when present and invalid.
  bool read_duration_into(const MapFields& fields, std::string_view key, int64_t min_ms, int64_t& out) {
    const Field* f = fields.find(key);
    if (f == nullptr) return true;
    const std::optional<int64_t> ms = read_duration_ms(*f, min_ms, d_);
    if (!ms) return false;
    out = *ms;
    return true;
  }

  // A path from the file, made absolute relative to the config file's folder.
  std::string resolve(const std::string& text) const {
    fs::path p(text);
    if (p.is_relative()) p = base_dir_ / p;
    p = p.lexically_normal();
    if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();  // drop a trailing '/'
    return p.string();
  }

  fs::path base_dir_;
  DiagnosticList& d_;
  std::optional<YAML::Mark> hold_mark_;  // broker.amqp.delay_unit, else consumer_timeout, where given
};

fs::path absolute_path(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(path), ec);
  if (ec) p = fs::path(path);
  return p.lexically_normal();
}

// Reads a whole file; on failure sets *error to strerror of the failing call.
// The largest config file read: far above any real one (30,000 events take
// about 2 MiB), and a bound for a mistaken path such as /dev/zero.
constexpr size_t kMaxConfigBytes = size_t{4} << 20;

bool read_file(const std::string& path, std::string* text, std::string* error) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    *error = std::strerror(errno);
    return false;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(file, &std::fclose);
  char buffer[16384];
  for (;;) {
    const size_t n = std::fread(buffer, 1, sizeof buffer, file);
    text->append(buffer, n);
    if (text->size() > kMaxConfigBytes) {
      *error = "it is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB, the limit for a config file " +
               "(is it the right file?)";
      return false;
    }
    if (n < sizeof buffer) break;
  }
  if (std::ferror(file)) {
    *error = std::strerror(errno);
    return false;
  }
  return true;
}

// Notes where a document and its first node start; ignores everything else.
class DocumentStart : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;
  std::optional<YAML::Mark> node;
  void OnDocumentStart(const YAML::Mark& m) override { start = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { at(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { at(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override { at(m); }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    at(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    at(m);
  }
  void OnMapEnd() override {}

 private:
  void at(const YAML::Mark& m) {
    if (!node) node = m;
  }
};

struct SecondDocument {
  bool found = false;  // a second document starts at `mark`
  bool stuck = false;  // the parser cannot get past `mark` (not a document at all)
  YAML::Mark mark;
};

// Whether `yaml` holds a second document. Not YAML::LoadAll(): yaml-cpp 0.7
// (Debian 12) never gets past some malformed input, a leading ',' for one,
// and yields another empty document at the same place on every call, so
// LoadAll() grows without bound until memory runs out (jbeder/yaml-cpp#1319,
// fixed after 0.8.0). Reading two documents at most, a second one that starts
// where the first did is that loop. Throws what YAML::Load() would.
SecondDocument find_second_document(const std::string& yaml) {
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentStart first;
  DocumentStart second;
  SecondDocument out;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second) || !second.start) return out;
  out.stuck = first.start && first.start->pos == second.start->pos && second.start->pos >= 0 &&
              static_cast<size_t>(second.start->pos) < yaml.size();
  out.found = !out.stuck;
  out.mark = out.stuck || !second.node ? *second.start : *second.node;
  return out;
}

ConfigLoad finish(const DiagnosticList& diagnostics, std::shared_ptr<Config> config) {
  ConfigLoad load;
  load.errors = diagnostics.sorted_errors();
  load.warnings = diagnostics.sorted_warnings();
  if (load.errors.empty()) load.config = std::move(config);
  return load;
}

}  // namespace

ConfigLoad load_config_from_string(const std::string& yaml, const std::string& display_path) {
  DiagnosticList diagnostics(display_path);
  auto config = std::make_shared<Config>();
  const fs::path absolute = absolute_path(display_path);
  config->path = absolute.string();
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
    const SecondDocument second = find_second_document(yaml);
    if (second.stuck) {
      diagnostics.error(second.mark, "invalid YAML: unexpected '" + std::string(1, yaml[second.mark.pos]) + "'");
      return finish(diagnostics, nullptr);
    }
    if (second.found) {
      diagnostics.error(second.mark, "a second YAML document (after ---) would be ignored; keep the whole "
                                     "config in one document");
      return finish(diagnostics, nullptr);
    }
  } catch (const YAML::Exception& e) {
    diagnostics.error(e.mark, "invalid YAML: " + e.msg);
    return finish(diagnostics, nullptr);
  } catch (const std::exception& e) {
    diagnostics.error_without_position(std::string("cannot parse the file: ") + e.what());
    return finish(diagnostics, nullptr);
  }
  try {
    ConfigParser(absolute.parent_path(), diagnostics).parse(root, *config);
  } catch (const std::exception& e) {
    // The parser checks node types before reading them, so this is a bug; still, never throw.
    diagnostics.error_without_position(std::string("internal error while checking the file: ") + e.what());
  }
  return finish(diagnostics, std::move(config));
}

ConfigLoad load_config(const std::string& path) {
  std::string text;
  std::string error;
  if (!read_file(path, &text, &error)) {
    DiagnosticList diagnostics(path);
    diagnostics.error_without_position("cannot read config file: " + error);
    return finish(diagnostics, nullptr);
  }
  return load_config_from_string(text, path);
}

}  // namespace ebats
