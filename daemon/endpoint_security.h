// EndpointSecurity: CurveZMQ on the client and worker endpoints, as configured
// (broker.{worker,client}_curve_secret_key_file and *_authorized_keys_dir).
//
// Owns the ZAP handler (and its thread), the broker's public keys, and the key
// pair the broker gives its own local workers (admitted, written nowhere).
// Fails closed: an unreadable key or key directory stops the broker starting;
// a reload that cannot read the keys keeps the old ones. Not thread-safe: the
// event loop calls it (the ZAP handler's own thread is internal to it).
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

class EndpointSecurity {
 public:
  EndpointSecurity(const common::Config& config, const Clock& clock, spdlog::logger& log)
      : config_(config), clock_(clock), log_(log) {}

  // Sets up the sockets (before they bind). `local_workers`: make a key pair
  // for the workers the broker spawns.
  [[nodiscard]] Result<void> secure(zmq::context_t& context, zmq::socket_t& clients,
                                    zmq::socket_t& workers, bool local_workers);

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
  std::string worker_server_public_;
  std::optional<common::CurveKeypair> local_worker_key_;
  uint64_t refused_logged_ = 0;
  Clock::SteadyTime last_refusal_log_{};
};

}  // namespace farmhand::daemon
