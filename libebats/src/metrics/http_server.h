// MetricsServer: serves GET /metrics (the Registry's exposition text) over
// HTTP/1.1, with Boost.Beast on a thread and io_context of its own, so a
// scrape never waits on the daemon's loop and the loop never waits on a scrape.
//
// GET /metrics -> 200 text/plain; version=0.0.4; other paths 404; other
// methods 405; a request that does not parse, or whose header passes 8 KiB,
// 400 and the connection closes; a client that has not sent its request
// within 5 s is disconnected. Each response closes its connection. At most
// 16 connections at once; more are closed on accept. No exception leaves the
// thread; the destructor stops and joins it.
#pragma once

#include <memory>
#include <string>

#include "daemon/logger.h"
#include "ebats/status.h"
#include "metrics/registry.h"

namespace ebats::metrics {

struct ListenAddress {
  std::string host;  // an IPv4 or IPv6 address, or a name resolved at start
  uint16_t port = 0;  // 0: any free port
};

// "HOST:PORT", "[V6]:PORT" or ":PORT" (loopback). invalid_argument naming what is wrong otherwise.
Result<ListenAddress> parse_listen_address(const std::string& text);

class MetricsServer {
 public:
  // Binds and listens (errors, e.g. the port in use, come back here), then
  // serves on its own thread. Logs "metrics listening" with the bound
  // address (the actual port when 0 was asked).
  static Result<std::unique_ptr<MetricsServer>> start(const ListenAddress& address, const Registry& registry,
                                                      const Logger& log);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address as HOST:PORT ([V6]:PORT).
  const std::string& address() const;
  uint16_t port() const;
  void stop();

  class Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ebats::metrics
