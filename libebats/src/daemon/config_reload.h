// reload_config: what a daemon does with its config file on SIGHUP
// (`systemctl reload`). The file is loaded and validated again; a file with
// errors changes nothing. Settings that only a restart can apply — the broker
// section (its URL, sqlite, amqp, password file), limits.max_message_bytes
// (the size every open connection and decoder was set up with) and sources
// (queues the scheduler consumes) — keep their running values in the new
// config and are named in `restart_needed`, so a daemon always runs one
// consistent configuration.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ebats/config.h"

namespace ebats {

struct ConfigReload {
  std::shared_ptr<const Config> config;       // null when the file has errors
  std::vector<std::string> errors;            // "file:line:col: error: ...", one per problem
  std::vector<std::string> restart_needed;    // e.g. "broker", "limits.max_message_bytes", "sources"
};

ConfigReload reload_config(const Config& running);

// What a reload would change for a worker: the config file's bytes and, for
// every entry of the plugin folder, its name, inode, size and change time.
// Equal fingerprints mean a SIGHUP (logrotate's) has nothing to reload.
std::string reload_fingerprint(const Config& config);

}  // namespace ebats
