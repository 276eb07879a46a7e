// BrokerCore: one event-loop turn of the broker, without its sockets — the
// components wired together, the turn they share, and the commit that ends it.
//
// The loop (daemon/broker.h) feeds it what arrives and calls end_turn(); it
// answers through the ports. A turn: messages are handled (replies, results
// and new jobs staged in the Turn), then the scheduler's clock work and
// dispatch run, then the Turn's batch is committed in one transaction, and
// only then do replies, result acks, Assign and Cancel leave: at once when
// the commit is durable by itself, else once the Flusher says so. The loop
// goes on meanwhile (the next turns' commits share the next flush), and each
// turn's mail is held until its commit number is flushed, so nothing — not
// even a read — reveals what is not yet durable. A failed flush is fatal
// (daemon/store/flusher.h): held replies get its error and the loop stops.
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
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "common/config.h"
#include "daemon/bad_messages.h"
#include "daemon/client_service.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/job_intake.h"
#include "daemon/online_backup.h"
#include "daemon/publish_intake.h"
#include "daemon/store/flusher.h"
#include "daemon/store/store.h"
#include "daemon/turn.h"
#include "daemon/worker_link.h"

namespace farmhand::daemon {

class BrokerCore final : public HealthSource {
 public:
  // `config` is the broker's, updated in place by a reload. `db_path` is where
  // the online backup reads from.
  BrokerCore(const common::Config& config, const std::string& db_path, const Clock& clock,
             Store& store, Flusher& flusher, ClientPort& clients, WorkerPort& workers,
             spdlog::logger& log);

  // Loads the Farm from the store (before anything else).
  [[nodiscard]] Result<void> restore();

  void on_client(const std::string& routing_id, bool req_envelope, const void* data, size_t size);
  void on_worker(const std::string& routing_id, const void* data, size_t size);

  // Ends the turn: clock work, dispatch, commit, then what the commit acknowledges.
  void end_turn();

  // Shutdown: running tasks go back to the queue without using an attempt
  // (nobody failed), the last turn is committed, everything held is answered.
  void shutdown();

  // When end_turn() next has work to do by itself.
  Clock::SteadyTime next_deadline() const;

  PublishIntake& publish() { return publish_; }

  int backup_fd() const { return backup_.fd(); }

  void on_backup_done() { backup_.finish(); }

  // The flusher's fd for the loop's poll, and what to call when it is readable:
  // sends the mail of every turn now durable.
  int flush_fd() const { return flusher_.fd(); }

  void on_flushed() { release_flushed(); }

  // Set once a flush failed: the loop must stop (systemd restarts farmhandd on
  // what the disk holds).
  const std::optional<Error>& fatal() const { return fatal_; }

  // Turns whose mail waits for a flush (for tests).
  size_t held_turns() const { return held_.size(); }

  // Empty while the store writes; else why it does not, for health and STATUS.
  std::optional<Error> store_failure() const override { return failure_; }

  const Farm& farm() const { return farm_; }

  // Counts for tests and health: commits that failed, and Farm rebuilds.
  uint64_t failed_commits() const override { return failed_commits_; }

 private:
  // What one turn sends, once its commit number is durable.
  struct Mail {
    uint64_t seq = 0;
    std::vector<PendingReply> replies;
    std::vector<std::pair<std::string, wire::BrokerMessage>> worker_mail;
    std::unordered_map<std::string, wire::ResultAck> acks;
  };

  void commit();
  void post();
  void send(Mail& mail);
  void release_flushed();
  void flush_all();
  void flush_failed(const Error& error);
  void undo_turn(const Error& error);
  void probe_store();
  void take_outbox();
  void forget_finished();

  const common::Config& config_;
  const Clock& clock_;
  Store& store_;
  Flusher& flusher_;
  ClientPort& client_port_;
  WorkerPort& worker_port_;
  spdlog::logger& log_;
  BadMessages bad_;
  Farm farm_;
  JobIntake intake_;
  PublishIntake publish_;
  OnlineBackup backup_;
  WorkerLink link_;
  ClientService clients_;
  Turn turn_;
  uint64_t commits_ = 0;   // numbers the store's commits
  std::deque<Mail> held_;  // oldest first, each waiting for its commit's flush
  std::optional<Error> fatal_;

  bool stopping_ = false;
  std::optional<Error> failure_;  // the store cannot write
  Clock::SteadyTime probe_at_{};
  std::chrono::milliseconds probe_backoff_{0};
  Clock::SteadyTime recovered_at_{};
  uint64_t failed_commits_ = 0;
  Clock::SteadyTime next_retention_sweep_{};
};

// The scheduler's options from the broker's config.
core::Scheduler::Options scheduler_options(const common::BrokerConfig& broker);

}  // namespace farmhand::daemon
