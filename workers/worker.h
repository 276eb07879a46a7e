// Worker: farmhand-worker's connection and lease runtime.
//
// A DEALER socket to the broker's worker endpoint (after the zguide's Paranoid
// Pirate worker): it introduces itself with Ready, beats every heartbeat
// interval, renews the leases of what it runs every third of the lease TTL,
// and counts the broker lost after `liveness` silent intervals — then it opens
// a fresh socket (backing off up to 30 s) and says Ready again, listing what it
// still runs so a restarted broker can keep those tasks where they are.
//
// Results are kept until the broker acknowledges them (it does so only after
// its commit) and are sent again after a reconnect, so a broker crash loses no
// finished work. `command` tasks run as process groups through ProcessRunner;
// `noop` tasks finish at once.
//
// Single-threaded: run() owns the calling thread until SIGTERM/SIGINT.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "common/result.h"
#include "workers/media_runner.h"
#include "workers/process_runner.h"

namespace farmhand::worker {

class Worker {
 public:
  struct Options {
    std::string broker;
    std::string name;
    uint32_t slots = 1;
    uint32_t interactive_slots = 1;  // extra slots only interactive-lane work may use
    std::vector<std::string> tags;
    std::string work_dir;  // per-task logs live here until the broker has them
    std::chrono::milliseconds heartbeat_interval{1000};  // until the broker's Welcome says
    uint32_t liveness = 3;
    std::string media_binary;         // farmhand-media; empty: media tasks fail
    uint64_t media_memory_mb = 4096;  // address-space cap of each media process
    // CurveZMQ (all three, or none): the broker's public key and ours, Z85.
    std::string curve_server_key;
    std::string curve_public_key;
    std::string curve_secret_key;
  };

  explicit Worker(Options options);
  ~Worker();

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves until SIGTERM/SIGINT: then kills running tasks and says goodbye.
  [[nodiscard]] Result<void> run();

 private:
  using Clock = std::chrono::steady_clock;
  using Key = std::tuple<uint64_t, uint64_t, uint64_t>;  // job, task, lease

  struct Task {
    wire::TaskRef ref;
    uint32_t attempt = 0;
    std::string log_path;
    bool media = false;
  };

  void connect();
  void send(const wire::WorkerMessage& msg);
  void send_ready();
  void handle(const wire::BrokerMessage& msg, Clock::time_point now);
  void start_task(const wire::Assign& assign, Clock::time_point now);
  void finish(uint64_t run_id, bool succeeded, const std::optional<Error>& error,
              std::chrono::milliseconds elapsed);
  void renew_leases();
  void send_progress();
  std::chrono::milliseconds poll_timeout(Clock::time_point now) const;
  void shutdown();

  Options options_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::context_t context_;
  std::unique_ptr<zmq::socket_t> socket_;
  ProcessRunner runner_;
  MediaRunner media_;
  int signal_fd_ = -1;
  bool stopping_ = false;
  bool ready_pending_ = false;  // Ready not yet handed to a connected socket

  std::chrono::milliseconds heartbeat_interval_;
  std::chrono::milliseconds lease_ttl_{30'000};
  Clock::time_point broker_seen_{};
  Clock::time_point last_beat_{};
  Clock::time_point last_renew_{};
  Clock::time_point reconnect_at_{};
  std::chrono::milliseconds reconnect_delay_{1000};

  uint64_t next_run_id_ = 1;
  std::map<uint64_t, Task> runs_;              // live command runs by run id
  std::map<Key, wire::TaskResult> unacked_;    // results the broker has not confirmed
  std::map<Key, std::string> logs_to_remove_;  // log files, removed on ack
};

}  // namespace farmhand::worker
