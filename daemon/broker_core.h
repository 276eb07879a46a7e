// BrokerCore: one event-loop turn of the broker, without its sockets — the
// components wired together, the turn they share, and the commit that ends it.
//
// The loop (daemon/broker.h) feeds it what arrives and calls end_turn(); it
// answers through the ports. A turn: messages are handled (replies, results
// and new jobs staged in the Turn), then the scheduler's clock work and
// dispatch run, then the Turn's batch is committed in one transaction, and
// only then does anything leave: Assign and Cancel once the commit is
// written (it survives farmhandd being killed), so the workers are at work
// while the store flushes it; then replies and result acks, which
// acknowledge, once it is durable (Store::flush). A failed flush is fatal:
// the turn's replies get its error and the loop stops, for systemd to restart
// farmhandd on what the disk really holds.
//
// Reads under load: a read that arrives while memory is at rest (nothing
// handled since the last turn's flush: the loop drains clients first) shows
// only flushed state, so it is answered at once instead of waiting for the
// turn's worker messages, commit and flush. A read after anything that
// changed state waits for the turn's flush, as writes do, so no reply
// overtakes a write. And a turn takes worker messages for a few milliseconds
// at most (turn_full), so a read waits for at most the rest of one short turn.
//
// A commit that fails never leaves memory ahead of disk: nothing of the turn
// is sent, every write it would have acknowledged is answered with the store's
// error, and the Farm is rebuilt from the store (sessions are dropped; workers
// introduce themselves again and resend their results). While the store cannot
// write, the core answers reads, refuses writes with that error, does not
// dispatch or take results, and probes the store with a growing backoff; it
// resumes by itself. Not thread-safe: the loop thread owns it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "common/config.h"
#include "daemon/bad_messages.h"
#include "daemon/change_feed.h"
#include "daemon/client_service.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/hooks.h"
#include "daemon/job_board.h"
#include "daemon/job_intake.h"
#include "daemon/metrics.h"
#include "daemon/online_backup.h"
#include "daemon/publish_intake.h"
#include "daemon/store/store.h"
#include "daemon/turn.h"
#include "daemon/worker_link.h"

namespace farmhand::daemon {

class BrokerCore final : public HealthSource {
 public:
  // `config` is the broker's, updated in place by a reload. `db_path` is where
  // the online backup reads from.
  BrokerCore(const common::Config& config, const std::string& db_path, const Clock& clock,
             Store& store, ClientPort& clients, WorkerPort& workers, spdlog::logger& log);

  // Loads the Farm from the store (before anything else).
  [[nodiscard]] Result<void> restore();

  // A request. A read that finds memory at rest is answered at once. `peer`:
  // the client's CURVE key name on a secured client port.
  void on_client(const std::string& routing_id, bool req_envelope, const void* data, size_t size,
                 const std::string& peer = {});

  // After a reload: the limits whose value the config file changed (or added)
  // take it, and it is stored, as `farmhand limit set` would. Limits the file
  // no longer names keep their value.
  void reload_limits(const std::map<std::string, uint32_t>& before);
  // The config's fair shares changed (or not): the scheduler takes them as they are.
  void reload_shares();
  // The config's hooks changed (Hooks::reload); between turns only.
  [[nodiscard]] Result<void> reload_hooks();
  void on_worker(const std::string& routing_id, const void* data, size_t size);

  // Whether the turn has taken enough worker messages: kMaxWorkerMessagesPerTurn,
  // or kWorkerTurnBudget of time since its first. The loop then ends the turn.
  bool turn_full() const;

  // A flood of worker messages must not hold a turn's commit (and so every
  // acknowledgement and every read behind it) for long: 20,000 results took
  // 400 ms at 2,000 workers. A read waits for the rest of the turn it arrives
  // in, so the turn is short: half a millisecond of messages still batches
  // about a hundred results per commit and flush. (bench/farm.sh: 2 ms turns
  // gave status p99 30 ms under a full farm; 0.5 ms gives 8-9 ms at the same
  // tasks/s, once the WAL checkpoint left the loop.)
  static constexpr std::chrono::microseconds kWorkerTurnBudget{500};
  static constexpr int kMaxWorkerMessagesPerTurn = 20'000;
  // A turn's dispatch, commit and Assigns grow with the slots it fills (a burst
  // of 2,000 freed slots made a 12 ms turn, and every read waited behind it):
  // a turn fills at most this many, and the next turn follows at once, after
  // the reads that came meanwhile. A filling 32,000-slot farm takes 63 turns.
  static constexpr size_t kMaxDispatchesPerTurn = 512;

  // Ends the turn: clock work, dispatch, commit, then what the commit acknowledges.
  void end_turn();

  // Shutdown: running tasks go back to the queue without using an attempt
  // (nobody failed), the last turn is committed, everything held is answered.
  void shutdown();

  // When end_turn() next has work to do by itself.
  Clock::SteadyTime next_deadline() const;

  PublishIntake& publish() { return publish_; }

  int backup_fd() const { return backup_.fd(); }

  // Readable when webhook attempts have outcomes (-1: no hooks); the loop
  // calls on_hooks_readable() and the turn's end takes them.
  int hooks_fd() const { return hooks_.fd(); }

  void on_hooks_readable() { hooks_.on_readable(); }

  const Hooks& hooks() const { return hooks_; }

  void on_backup_done() { backup_.finish(); }

  // Set once a flush failed: the loop must stop (systemd restarts farmhandd on
  // what the disk holds).
  const std::optional<Error>& fatal() const { return fatal_; }

  // Empty while the store writes; else why it does not, for health and STATUS.
  std::optional<Error> store_failure() const override { return failure_; }

  const Farm& farm() const { return farm_; }

  // What changed, for the HTTP front's live stream (thread-safe to read).
  ChangeFeed& feed() { return feed_; }

  // Every job's summary as of the last flush, for the HTTP front's job lists.
  JobBoard& board() { return board_; }

  // The broker's Prometheus metrics; Metrics::text() may be read from any thread.
  Metrics& metrics() { return metrics_; }

  // The gauges are refreshed at the end of a turn at most this often (a walk
  // over the jobs, workers and limits).
  static constexpr std::chrono::seconds kMetricsRefresh{1};

  // Counts for tests and health: commits that failed, and Farm rebuilds.
  uint64_t failed_commits() const override { return failed_commits_; }

  std::optional<Clock::SteadyTime> next_store_probe() const override {
    if (!failure_) return std::nullopt;
    return probe_at_;
  }

 private:
  // Writes the Turn's batch (undoing the turn when that fails).
  void commit();
  // Sends what the turn decided: Assign and Cancel, then, once the store has
  // flushed, replies and result acks.
  void post();
  void flush_failed(const Error& error);
  void undo_turn(const Error& error);
  void probe_store();
  void take_outbox();
  // A farm event: to the hooks that name it and the rules that match it.
  void farm_event(const std::string& event, core::JobId job, nlohmann::json subject);
  // Rules that match farm events make their jobs for this one.
  void run_event_rules(const std::string& event, core::JobId job);
  void forget_finished();
  // Retention of action idempotency keys (action_key_retention_ms()).
  void forget_action_keys();
  // Nothing handled since the last flush: memory shows only what is durable.
  bool at_rest() const;
  double seconds_since(Clock::SteadyTime start) const;

  const common::Config& config_;
  const Clock& clock_;
  Store& store_;
  ClientPort& client_port_;
  WorkerPort& worker_port_;
  spdlog::logger& log_;
  BadMessages bad_;
  Metrics metrics_;
  Farm farm_;
  ChangeFeed feed_;
  JobBoard board_;
  Hooks hooks_;
  JobIntake intake_;
  PublishIntake publish_;
  OnlineBackup backup_;
  WorkerLink link_;
  ClientService clients_;
  Turn turn_;
  int worker_messages_ = 0;  // handled in this turn
  Clock::SteadyTime first_worker_message_{};
  bool changed_ = false;           // state may differ from what is flushed (see at_rest)
  bool more_to_dispatch_ = false;  // the last turn filled kMaxDispatchesPerTurn slots
  uint64_t commits_ = 0;           // numbers the store's commits
  uint64_t flushed_ = 0;           // the last one flushed
  std::optional<Error> fatal_;

  bool stopping_ = false;
  std::optional<Error> failure_;  // the store cannot write
  Clock::SteadyTime probe_at_{};
  std::chrono::milliseconds probe_backoff_{0};
  Clock::SteadyTime recovered_at_{};
  uint64_t failed_commits_ = 0;
  Clock::SteadyTime next_retention_sweep_{};
  Clock::SteadyTime next_key_sweep_{};
  Clock::SteadyTime next_metrics_refresh_{};
};

// The scheduler's options from the broker's config.
core::Scheduler::Options scheduler_options(const common::BrokerConfig& broker);

}  // namespace farmhand::daemon
