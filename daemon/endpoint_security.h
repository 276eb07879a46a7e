// EndpointSecurity: CurveZMQ on the client and worker endpoints.
//
// The worker endpoint is secured by default: with the configured key file and
// authorised-keys directory (broker.worker_curve_secret_key_file and
// worker_authorized_keys_dir), else with the key pair the broker makes in its
// state dir on first start (STATE_DIR/keys/broker.key, 0600, and broker.pub)
// and the worker keys in STATE_DIR/keys/workers/; `worker_curve: false` makes
// it plain. The client endpoint is secured only when configured
// (broker.client_curve_secret_key_file and client_authorized_keys_dir). An
// endpoint without CURVE beyond loopback is refused unless allow_insecure.
//
// Owns the ZAP handler (and its thread), the broker's public keys, and the key
// pair the broker gives its own local workers (admitted, written nowhere).
// Fails closed: an unreadable, malformed or too widely readable key, or an
// unreadable key directory, stops the broker starting; a reload that cannot
// read the keys keeps the old ones. Not thread-safe: the event loop calls it
// (the ZAP handler's own thread is internal to it).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "common/config.h"
#include "common/curve.h"
#include "common/result.h"
#include "daemon/clock.h"
#include "daemon/zap.h"

namespace farmhand::daemon {

// Refuses an endpoint without CurveZMQ that listens beyond loopback
// (common::is_loopback_endpoint), unless broker.allow_insecure. The worker
// endpoint has CURVE unless broker.worker_curve is false.
[[nodiscard]] Result<void> check_plain_endpoints(const common::BrokerConfig& broker);

// The worker endpoint's public key, for `farmhandd --print-worker-key`: from the
// configured secret key file, else STATE_DIR/keys/broker.pub (made by the
// broker's first start). Errors: the endpoint is plain, or no key yet.
[[nodiscard]] Result<std::string> worker_endpoint_public_key(const common::Config& config,
                                                             const std::string& state_dir);

class EndpointSecurity {
 public:
  EndpointSecurity(const common::Config& config, const Clock& clock, spdlog::logger& log)
      : config_(config), clock_(clock), log_(log) {}

  // Sets up the sockets (before they bind): refuses a plain endpoint beyond
  // loopback, makes or reads the broker's key pair in `state_dir`. `local_workers`:
  // make a key pair for the workers the broker spawns.
  [[nodiscard]] Result<void> secure(zmq::context_t& context, zmq::socket_t& clients,
                                    zmq::socket_t& workers, bool local_workers,
                                    const std::string& state_dir);

  // NAME=VALUE for the local workers' environment (their CURVE keys), if any.
  std::vector<std::string> local_worker_env() const;

  // SIGHUP: re-reads the authorised-keys directories.
  void reload_keys();

  // Logs refused connections, at most once per burst.
  void log_refusals();

 private:
  [[nodiscard]] Result<size_t> load_authorized_keys(const char* domain);

  const common::Config& config_;
  const Clock& clock_;
  spdlog::logger& log_;
  std::unique_ptr<ZapHandler> zap_;
  bool secure_workers_ = false;
  std::string worker_keys_dir_;  // configured, or STATE_DIR/keys/workers
  std::string worker_server_public_;
  std::optional<common::CurveKeypair> local_worker_key_;
  uint64_t refused_logged_ = 0;
  Clock::SteadyTime last_refusal_log_{};
};

}  // namespace farmhand::daemon
