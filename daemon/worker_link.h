// WorkerLink: the broker's side of the worker protocol (proto/PROTOCOL.md).
//
// Owns the worker sessions (routing id <-> scheduler WorkerId, host, pid), the
// progress running media tasks report, the heartbeat timer, and `farmhand logs`
// queries that wait on a worker for a running task's log so far.
// Feeds what workers say to the scheduler (through the Farm) and stages what
// acknowledges or acts on state in the Turn: Assign and Cancel leave once the
// turn's commit is written, result acks once it is flushed (broker_core.h).
// Welcome, Reconnect, heartbeats and log requests change no state and go at
// once, through the WorkerPort.
// Not thread-safe: the event loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "daemon/bad_messages.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/metrics.h"
#include "daemon/turn.h"

namespace farmhand::daemon {

class WorkerLink {
 public:
  struct Peer {
    core::WorkerId id = 0;
    std::string host;
    uint32_t pid = 0;
  };

  WorkerLink(const common::Config& config, const Clock& clock, Farm& farm, WorkerPort& workers,
             ClientPort& clients, BadMessages& bad, Metrics& metrics, spdlog::logger& log)
      : config_(config),
        clock_(clock),
        farm_(farm),
        workers_(workers),
        clients_(clients),
        bad_(bad),
        metrics_(metrics),
        log_(log) {}

  // One message from a worker. With `accept_results` false (the store cannot
  // write) results are neither fed to the scheduler nor acknowledged: the
  // worker keeps them and sends them again when it registers anew.
  void on_message(const std::string& routing_id, const void* data, size_t size, Turn& turn,
                  bool accept_results = true);

  // While the store cannot write: no message is taken; a heartbeat is answered
  // with Reconnect, so the worker keeps the broker for alive and says Ready
  // (which is dropped too) once per heartbeat until the store is back.
  void on_message_while_paused(const std::string& routing_id, const void* data, size_t size);

  // Assign messages for the scheduler's dispatches, staged in the turn.
  void assign(const std::vector<core::Dispatch>& dispatches, Turn& turn);
  // Cancel orders, staged in the turn.
  void cancel(const std::vector<core::CancelOrder>& cancels, Turn& turn);

  // Heartbeats to every session, once per heartbeat interval; sessions the
  // scheduler forgot (lost long ago) are forgotten here too, first. A round
  // goes out kBeatsPerTurn sessions a turn (2,000 beats in one turn took 3 ms,
  // and every read waited behind them); next_deadline() is due at once until
  // the round is done.
  void send_heartbeats();
  static constexpr size_t kBeatsPerTurn = 256;

  // Drops every session, telling each worker to introduce itself again (after
  // the Farm was rebuilt from the store, or the store came back): a worker then
  // lists what it runs and sends its unacknowledged results again.
  void reset_sessions();

  std::optional<Clock::SteadyTime> next_deadline() const;

  const Peer* peer(core::WorkerId id) const;

  // What a running task reported on its current lease: done of total (frames
  // of a media task, percent of an OpenJD one) and its own status line.
  struct TaskProgress {
    uint64_t done = 0;
    uint64_t total = 0;
    std::string status;
  };

  std::optional<TaskProgress> progress(core::JobId job, core::TaskIndex task) const;
  void forget_progress(core::JobId job);

  // `farmhand logs` of running tasks: asks their workers for the log so far
  // and holds the reply (true) until they answer or kLogQueryTimeout passes.
  bool ask_running_logs(const PendingReply& pending, const wire::LogsRequest& request,
                        bool stopping);
  // Answers log queries that ran out of time (all of them when `all`).
  void answer_log_queries(bool all);

  static constexpr size_t kMaxLogTailBytes = 64 * 1024;
  // A task's status line as shown; longer ones are cut.
  static constexpr size_t kMaxStatusBytes = 256;

 private:
  void on_ready(const std::string& routing_id, const wire::Ready& ready);
  void on_result(const std::string& routing_id, core::WorkerId worker,
                 const wire::TaskResult& result, Turn& turn);
  void on_log_reply(const wire::LogReply& log);
  // Forgets the session's routing (a session the scheduler dropped).
  void forget_session(core::WorkerId id);

  struct LogAsked {
    uint64_t job = 0;
    uint64_t task = 0;
    uint32_t attempt = 0;
    std::string worker;
  };

  struct LogQuery {
    PendingReply pending;                // the finished attempts' logs, filled already
    std::map<uint64_t, LogAsked> asked;  // LogRequest ids not yet answered
    Clock::SteadyTime deadline;
  };

  static constexpr size_t kMaxLogQueries = 256;
  static constexpr size_t kMaxRunningLogs = 16;  // running tasks asked per request
  // Workers answer in milliseconds; this stays well under a client's resend (half its
  // timeout, at least 1 s) so that a silent worker never costs the client a second try.
  static constexpr std::chrono::milliseconds kLogQueryTimeout{800};

  const common::Config& config_;
  const Clock& clock_;
  Farm& farm_;
  WorkerPort& workers_;
  ClientPort& clients_;
  BadMessages& bad_;
  Metrics& metrics_;
  spdlog::logger& log_;

  std::unordered_map<std::string, Peer> peers_;  // by routing id
  std::unordered_map<core::WorkerId, std::string> routes_;
  core::WorkerId next_worker_id_ = 1;
  Clock::SteadyTime last_heartbeat_{};
  std::vector<std::string> beat_round_;  // routing ids the round has still to beat
  size_t beat_next_ = 0;                 // from here

  // What a running media task last reported, under the lease it ran on: only
  // the worker holding a task's current lease reports its progress, and a
  // report outlives neither the lease (progress() checks) nor the job.
  struct Progress {
    core::WorkerId worker = 0;
    uint64_t lease = 0;
    uint64_t done = 0;
    uint64_t total = 0;
    std::string status;
  };

  std::map<std::pair<core::JobId, uint64_t>, Progress> progress_;
  std::vector<LogQuery> log_queries_;
  uint64_t next_log_request_ = 0;
};

}  // namespace farmhand::daemon
