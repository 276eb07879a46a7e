// ZapHandler: ZeroMQ's authentication protocol (ZAP, RFC 27) for the worker
// and client endpoints when they run CurveZMQ.
//
// libzmq asks the handler bound at inproc://zeromq.zap.01 of the socket's
// context about every new connection to a socket that has a ZAP domain. This
// one admits a CURVE client only if its public key is in the admitted set of
// the socket's domain (for workers: the authorised-keys directory plus the
// keys the broker gave its own local workers; for clients: theirs); any other
// mechanism, key or domain is refused. The handler runs on its
// own thread for as long as the object lives, so a connection is never
// admitted for want of an answer.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "common/result.h"

namespace farmhand::daemon {

class ZapHandler {
 public:
  static constexpr const char* kWorkers = "farmhand-workers";
  static constexpr const char* kClients = "farmhand-clients";

  explicit ZapHandler(zmq::context_t& context);
  ~ZapHandler();

  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // Binds the handler and starts its thread. Must run before the secured
  // socket binds.
  [[nodiscard]] Result<void> start();

  // Replaces the keys (Z85 public keys) admitted to `domain`.
  // The keys admitted in `domain`, each with the name a client of it is known
  // by (its ZAP User-Id, read from the message's "User-Id" property).
  void set_keys(const std::string& domain, std::map<std::string, std::string> keys);

  // Connections refused so far, and why the last one was (for the broker's
  // log: the handler thread does not log).
  uint64_t refused() const { return refused_.load(); }

  std::string last_refused();

 private:
  void run();

  zmq::context_t& context_;
  zmq::socket_t socket_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::map<std::string, std::map<std::string, std::string>> keys_;  // by ZAP domain: key -> name
  std::atomic<uint64_t> refused_{0};
  std::string last_refused_;  // under mutex_
};

}  // namespace farmhand::daemon
