// Supervisor: the broker's local workers — spawned at start, restarted with
// exponential backoff when they die, stopped on shutdown.
//
// Each child is `farmhand-worker --broker ENDPOINT --name local-N --work-dir
// STATE_DIR/workers/local-N ...`: a work dir per broker, since two brokers on
// one host have local workers of the same names, which must not share task
// logs or saved results. Children start with PR_SET_PDEATHSIG so that a broker
// killed with -9 takes its local workers with it (a restarted broker spawns
// fresh ones under the same names and work dirs; they resend the results the
// old ones saved, and the scheduler requeues what the old ones ran). Children are
// started, signalled and reaped through a common::Spawner, by pid, never
// waitpid(-1), so the supervisor does not steal other children. A worker that
// cannot be started (spawn fails) is retried after the longest backoff.
// Not thread-safe: the event loop owns it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/spawner.h"

namespace farmhand::daemon {

class Supervisor {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string worker_binary;
    std::string broker_endpoint;
    std::string state_dir;  // the broker's; local workers' work dirs go under it
    int count = 0;
    unsigned slots = 1;
    unsigned interactive_slots = 1;  // reserved for the interactive lane
    std::vector<std::string> tags;
    uint32_t cores = 0;   // --cores for each worker; 0: it detects them
    uint64_t memory = 0;  // --memory in bytes; 0: it detects it
    std::string log_level = "info";
    std::vector<std::string> env;  // NAME=VALUE added to the workers' environment
  };

  // `spawner` must outlive the supervisor.
  explicit Supervisor(Options options, common::Spawner& spawner = common::real_spawner());
  ~Supervisor();  // stops the children if stop() was not called

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Reaps dead children and (re)starts those that are due.
  void maintain(Clock::time_point now);

  // The next time maintain() has a restart to do.
  std::optional<Clock::time_point> next_deadline() const;

  // SIGTERM to every child, SIGKILL to those still alive after `grace`.
  void stop(std::chrono::milliseconds grace);

  int alive() const;

 private:
  struct Child {
    std::string name;
    pid_t pid = -1;
    int failures = 0;  // consecutive quick deaths, for the restart backoff
    Clock::time_point started{};
    Clock::time_point restart_at{};
  };

  Result<pid_t> spawn(const Child& child);

  Options options_;
  common::Spawner& spawner_;
  std::vector<Child> children_;
  bool stopped_ = false;
};

}  // namespace farmhand::daemon
