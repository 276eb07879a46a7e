// Broker: farmhandd's event loop (after Redis's ae.c) — a thin shell that
// polls, feeds what arrives to the BrokerCore, and ends each turn with its
// commit. Everything else lives in a component with one concern:
//   BrokerCore (broker_core.h)        the turn and its commit, wiring:
//     JobIntake (job_intake.h)        submit; the job kinds table (job_kinds.h)
//     PublishIntake (publish_intake.h) publish events, rules, watched folders
//     ClientService (client_service.h) client requests, reads, held status
//     WorkerLink (worker_link.h)      worker sessions, assigns, acks, logs
//     OnlineBackup (online_backup.h)  `farmhand admin backup`
//     Farm (farm.h)                   the in-memory mirror of the store
//   Endpoints (endpoints.h)           the two ROUTER sockets and their framing
//   EndpointSecurity (endpoint_security.h) CurveZMQ and its ZAP handler
//   Supervisor (supervisor.h)         local workers
//
// One thread. Each turn polls the sockets, a signalfd and the watcher's and
// backup's fds with a timeout set to the nearest deadline of any component.
// Not thread-safe; run() owns the thread that calls it.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/result.h"
#include "daemon/bad_messages.h"
#include "daemon/broker_core.h"
#include "daemon/clock.h"
#include "daemon/endpoint_security.h"
#include "daemon/endpoints.h"
#include "daemon/http/http_front.h"
#include "daemon/state_dir.h"
#include "daemon/store/store.h"
#include "daemon/supervisor.h"

namespace farmhand::daemon {

class Broker {
 public:
  struct Options {
    common::Config config;
    std::string config_path;  // reloaded on SIGHUP; empty: the embedded defaults
    std::string state_dir;
    int local_workers = 0;
    std::string worker_binary;
  };

  explicit Broker(Options options);
  ~Broker();

  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Opens the store, restores state, binds the sockets. Errors are one line.
  [[nodiscard]] Result<void> start();

  // Serves until SIGTERM or SIGINT; then stops dispatching, persists, stops local workers.
  [[nodiscard]] Result<void> run();

 private:
  // The HTTP front, unless http.listen is off (daemon/http/http_front.h).
  [[nodiscard]] Result<void> start_http();
  void turn();
  void on_signals();
  void reload_config();
  void report_health();

  Options options_;
  std::shared_ptr<spdlog::logger> log_;
  SystemClock clock_;
  BadMessages bad_;
  Endpoints endpoints_;
  EndpointSecurity security_;
  std::unique_ptr<StateDir> state_dir_;  // before store_: unlocked after the store closes
  std::unique_ptr<Store> store_;
  std::unique_ptr<BrokerCore> core_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<HttpFront> http_;  // after endpoints_: its sockets go before the context
  int signal_fd_ = -1;
  bool stopping_ = false;
  Clock::SteadyTime last_watchdog_{};
  std::string health_;  // last STATUS told to systemd
};

}  // namespace farmhand::daemon
