// Worker: farmhand-worker's connection and lease runtime.
//
// A DEALER socket to the broker's worker endpoint (after the zguide's Paranoid
// Pirate worker): it introduces itself with Ready, beats every heartbeat
// interval, renews the leases of what it runs every third of the lease TTL,
// and counts the broker lost after `liveness` silent intervals — then it opens
// a fresh socket (backing off 1 s doubling up to max_reconnect_delay, default 30 s)
// and says Ready again, listing what it still holds so a restarted broker can
// keep those tasks where they are. Between attempts it sleeps: a worker
// without its broker wakes a few times a second at most.
//
// Results are kept until the broker acknowledges them (it does so only after
// its commit) and are sent again after a reconnect, so a broker crash loses no
// finished work. A result still unacknowledged 0.25 s after its task ended is also
// written to the work dir (ResultStore), so it survives a worker restart too:
// the next process lists it in Ready.running and sends it after the Welcome.
// The work dir is locked (WorkDirLock): one live worker per work dir.
//
// Ready carries `instance`, a random id made per process. A broker that
// refuses the Ready (Refused, e.g. the name is in use) gets one log line; the
// worker then sends nothing until its backoff passes and tries Ready again.
//
// `command` tasks run as process groups through ProcessRunner, each in a cgroup
// v2 of its own where the host allows it (TaskCgroups, probed at construction:
// the worker may move itself into a leaf cgroup then); `noop` tasks finish at
// once. The worker is its descendants' child subreaper, so what a
// task's processes orphan is reaped (and its use counted) here; what left its
// task's group is reaped too, uncounted.
//
// Single-threaded: run() owns the calling thread until SIGTERM/SIGINT (read
// from a signalfd; the signals are blocked in the calling thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
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
#include "workers/cgroup.h"
#include "workers/media_runner.h"
#include "workers/openjd_runner.h"
#include "workers/process_runner.h"
#include "workers/work_dir.h"

namespace farmhand::worker {

class Worker {
 public:
  struct Options {
    std::string broker;
    std::string name;
    uint32_t slots = 1;
    uint32_t interactive_slots = 1;  // extra slots only interactive-lane work may use
    std::vector<std::string> tags;
    std::string work_dir;  // locked; task logs and unacknowledged results, until acked
    std::chrono::milliseconds heartbeat_interval{1000};  // until the broker's Welcome says
    uint32_t liveness = 3;
    std::chrono::milliseconds max_reconnect_delay{30'000};  // cap of the reconnect backoff
    std::string media_binary;         // farmhand-media; empty: media tasks fail
    uint64_t media_memory_mb = 4096;  // address-space cap of each media process
    // CurveZMQ (all three, or none): the broker's public key and ours, Z85.
    std::string curve_server_key;
    std::string curve_public_key;
    std::string curve_secret_key;
    // What Ready offers; 0: detected (workers/host_resources.h).
    uint32_t cores = 0;
    uint64_t memory_bytes = 0;
    // GPUs it offers, numbered 0..N-1 as CUDA numbers them in PCI bus order;
    // nullopt: the NVIDIA GPUs the driver lists (/proc/driver/nvidia/gpus).
    std::optional<uint32_t> gpus;
    // Assign.memory_limit_bytes is enforced (memory.max, else by sampling).
    bool enforce_memory = true;
    // A cgroup v2 per command task where the host allows it; false: process
    // groups only (--no-cgroups).
    bool cgroups = true;
  };

  explicit Worker(Options options);
  ~Worker();

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves until SIGTERM/SIGINT: then kills running tasks and says goodbye.
  // Fails at once when the work dir cannot be locked (another worker has it).
  [[nodiscard]] Result<void> run();

  // This process's id in Ready.instance: 32 random hex digits.
  const std::string& instance() const { return instance_; }

  // Ready.isolation: how command tasks are isolated here.
  std::string isolation() const { return cgroups_->isolation(options_.enforce_memory); }

 private:
  using Clock = std::chrono::steady_clock;
  using Key = std::tuple<uint64_t, uint64_t, uint64_t>;  // job, task, lease

  struct Task {
    wire::TaskRef ref;
    uint32_t attempt = 0;
    std::string log_path;
    bool media = false;
    bool openjd = false;
    std::vector<uint32_t> gpus{};  // the GPUs it was given (indices)
  };

  struct Unacked {
    wire::TaskResult result;
    bool saved = false;  // in the ResultStore
  };

  void connect();
  void send(const wire::WorkerMessage& msg);
  void send_ready();
  void handle(const wire::BrokerMessage& msg, Clock::time_point now);
  void start_task(const wire::Assign& assign, Clock::time_point now);
  // Gives the task `count` free GPUs (fewer if fewer are free: the broker
  // packs by Ready.gpus, so only after a restart lost track of some) and the
  // environment that names them.
  std::vector<uint32_t> take_gpus(uint32_t count, std::map<std::string, std::string>& env);
  void finish(uint64_t run_id, bool succeeded, const std::optional<Error>& error,
              std::chrono::milliseconds elapsed, const std::optional<TaskUsage>& usage = {},
              bool out_of_memory = false);
  void renew_leases();
  void send_progress();
  std::chrono::milliseconds poll_timeout(Clock::time_point now) const;
  void back_off(Clock::time_point now);
  void restore_results();
  void save_results(Clock::time_point now, bool all);
  void drop_settled_from_to_save();
  void shutdown();

  Options options_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::context_t context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<TaskCgroups> cgroups_;  // before runner_, which uses it
  ProcessRunner runner_;
  MediaRunner media_;
  OpenJdRunner openjd_;
  int signal_fd_ = -1;
  bool stopping_ = false;
  bool ready_pending_ = false;  // Ready not yet handed to a connected socket
  Clock::time_point ready_retry_at_{};
  std::chrono::milliseconds ready_retry_delay_{20};
  std::string instance_;
  std::optional<WorkDirLock> work_dir_lock_;
  ResultStore result_store_;
  bool refused_ = false;      // refused, no Welcome since: only Ready, at reconnect_at_
  std::string last_refusal_;  // logged once, until a Welcome

  std::chrono::milliseconds heartbeat_interval_;
  std::chrono::milliseconds lease_ttl_{30'000};
  Clock::time_point broker_seen_{};
  Clock::time_point last_beat_{};
  Clock::time_point last_renew_{};
  Clock::time_point reconnect_at_{};
  std::chrono::milliseconds reconnect_delay_{1000};

  uint64_t next_run_id_ = 1;
  std::map<uint64_t, Task> runs_;                          // live command runs by run id
  std::vector<bool> gpu_busy_;                             // by GPU index
  std::map<Key, Unacked> unacked_;                         // results the broker has not confirmed
  std::deque<std::pair<Clock::time_point, Key>> to_save_;  // unacked, by finish time
  std::map<Key, std::string> logs_to_remove_;              // log files, removed on ack
};

}  // namespace farmhand::worker
