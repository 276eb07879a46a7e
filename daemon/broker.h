// Broker: farmhandd's event loop — the imperative shell around core::Scheduler.
//
// One thread. Each turn it polls the client and worker ROUTER sockets and a
// signalfd with a timeout set to the nearest deadline, decodes and size-checks
// every message, feeds events to the scheduler, sends dispatches, and then
// commits the turn's changes to the store in one transaction. Only after that
// commit does it send what acknowledges state: submit/action replies to clients
// and result acks to workers (group commit: one fsync per turn, not per task).
//
// Nothing a client or worker sends can stop the loop: every handler has a
// catch-all, malformed frames are counted and logged (rate-limited) and dropped.
// Not thread-safe; run() owns the thread that calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "common/config.h"
#include "common/curve.h"
#include "common/result.h"
#include "daemon/core/scheduler.h"
#include "daemon/state_dir.h"
#include "daemon/store/sqlite_store.h"
#include "daemon/supervisor.h"
#include "daemon/watcher.h"
#include "daemon/zap.h"

namespace farmhand::daemon {

// Shared by broker.cpp and broker_publish.cpp.
void set_error(wire::ClientReply& reply, const Error& error);
int64_t unix_ms_now();  // wall clock, for what users read (submitted, received)

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
  struct PendingReply {
    std::string routing_id;
    bool req_envelope = false;  // a REQ socket wants an empty delimiter frame back
    wire::ClientReply reply;
  };

  struct WorkerPeer {
    core::WorkerId id = 0;
    std::string host;
    uint32_t pid = 0;
    std::chrono::steady_clock::time_point last_beat_sent{};
  };

  core::Millis now_ms() const;
  Result<void> restore();
  void turn();
  void drain_clients();
  void drain_workers();
  void handle_client(const std::string& routing_id, bool req_envelope,
                     const zmq::message_t& payload);
  void handle_worker(const std::string& routing_id, const zmq::message_t& payload);
  void handle_submit(const wire::SubmitRequest& request, wire::ClientReply& reply);
  void handle_status(const wire::StatusRequest& request, wire::ClientReply& reply);
  // Long-polled status (StatusRequest.wait_ms): holds the reply when the job
  // has not changed since the client's seen_version; true when held.
  bool hold_status(const PendingReply& pending, const wire::StatusRequest& request);
  // Answers held status requests whose job changed or whose wait ran out (all
  // of them when `all`). Called after the turn's commit.
  void answer_status_waiters(bool all);
  // What a follower sees of the job, fingerprinted; never 0.
  uint64_t job_version(core::JobId id) const;
  // `farmhand logs` of running tasks: asks their workers for the log so far
  // and holds the reply (true) until they answer or kLogQueryTimeout passes.
  bool ask_running_logs(const PendingReply& pending, const wire::LogsRequest& request);
  void on_log_reply(const wire::LogReply& log);
  void answer_log_queries(bool all);
  void handle_list(const wire::ListRequest& request, wire::ClientReply& reply);
  void handle_action(const wire::JobActionRequest& request, wire::ClientReply& reply);
  void handle_workers(wire::ClientReply& reply);
  void handle_logs(const wire::LogsRequest& request, wire::ClientReply& reply);
  // Publish intake (broker_publish.cpp).
  void handle_publish(const wire::PublishRequest& request, wire::ClientReply& reply);
  void handle_events(const wire::EventsRequest& request, wire::ClientReply& reply);
  void add_event(const wire::EventInfo& event, wire::EventsReply& out) const;
  bool handle_backup(const std::string& routing_id, bool req_envelope,
                     const wire::BackupRequest& request, wire::ClientReply& reply);
  void finish_backup();
  Result<void> restore_events();
  Result<void> start_watching();
  void publish_settled();
  void reload_config();
  // Sets up CurveZMQ on the worker and client sockets (before they bind), as
  // configured.
  Result<void> secure_endpoints();
  // Re-reads a ZAP domain's authorised-keys directory into the handler.
  Result<size_t> load_authorized_keys(const char* domain);
  // Retention: forgets jobs finished more than broker.keep_finished ago (that
  // nothing depends on) and the events whose jobs are all gone.
  void forget_finished();
  // Records when a job finished (0: reopened), in memory and in this turn's batch.
  void note_finished(core::JobId id, int64_t unix_ms);
  // Validates and creates one job (the body of a submit); not yet durable.
  // `on_disk`: a media job's input frames, when a publish has read them already.
  Result<core::JobId> create_job(wire::JobSpec spec, const common::FrameSet* on_disk = nullptr);
  void send_reply(const PendingReply& pending);
  void fill_summary(core::JobId id, wire::JobSummary& summary) const;
  void send_dispatches(const std::vector<core::Dispatch>& dispatches);
  void apply_outbox();
  void commit_and_acknowledge();
  void send_heartbeats();
  void note_bad_message(const char* socket, const std::string& reason);
  std::chrono::milliseconds poll_timeout() const;

  Options options_;
  std::shared_ptr<spdlog::logger> log_;
  std::chrono::steady_clock::time_point origin_;
  std::unique_ptr<StateDir> state_dir_;  // locked for the broker's life; outlives store_
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<core::Scheduler> scheduler_;
  std::unique_ptr<Supervisor> supervisor_;
  zmq::context_t context_;
  zmq::socket_t clients_;
  zmq::socket_t workers_;
  // CurveZMQ on the worker endpoint (broker.worker_curve_secret_key_file): the
  // ZAP handler admitting authorised keys, and the key pair the broker gives
  // its own local workers (admitted too, never written anywhere).
  std::unique_ptr<ZapHandler> zap_;
  std::string curve_server_public_;
  std::optional<common::CurveKeypair> local_worker_key_;
  uint64_t zap_refused_logged_ = 0;
  std::chrono::steady_clock::time_point last_zap_log_{};
  int signal_fd_ = -1;
  bool stopping_ = false;

  // Per job, what the scheduler does not keep: the submitted spec and when.
  struct JobExtra {
    wire::JobSpec spec;
    int64_t submitted_unix_ms = 0;
    int64_t finished_unix_ms = 0;  // 0 while not finished (retention counts from here)
  };

  std::unordered_map<core::JobId, JobExtra> extras_;
  std::unordered_map<std::string, core::JobId> idempotency_keys_;

  // Publish events, in order of arrival, and where each id is.
  std::vector<wire::EventInfo> events_;
  std::unordered_map<std::string, size_t> event_index_;
  size_t uncommitted_events_ = 0;  // the last ones in events_, accepted this turn
  uint64_t event_counter_ = 0;
  // Watched folders: what was published from them (patterns), for `republish: false`.
  std::unique_ptr<FolderWatcher> watcher_;
  static constexpr std::chrono::seconds kWatchRetry{10};
  std::optional<std::chrono::steady_clock::time_point> watch_retry_at_;  // after a failed start
  std::set<std::string> watch_published_;

  // At most one online backup, run on its own thread and connection.
  struct Backup {
    std::thread thread;
    int event_fd = -1;
    PendingReply reply;
    std::string target;
    Result<uint64_t> result = 0;
    std::chrono::steady_clock::time_point started{};
  };

  std::unique_ptr<Backup> backup_;
  std::string db_path_;
  std::chrono::steady_clock::time_point last_watchdog_{};
  std::chrono::steady_clock::time_point next_retention_sweep_{};
  static constexpr size_t kMaxForgetPerSweep = 10'000;  // per turn: turns stay short

  std::unordered_map<std::string, WorkerPeer> peers_;  // by routing id
  std::unordered_map<core::WorkerId, std::string> routes_;
  core::WorkerId next_worker_id_ = 1;
  std::chrono::steady_clock::time_point last_heartbeat_{};

  // Progress that running media tasks report (frames done of total), by (job, task).
  std::map<std::pair<core::JobId, uint64_t>, std::pair<uint64_t, uint64_t>> progress_;

  Batch batch_;
  std::vector<core::JobId> uncommitted_jobs_;  // submitted this turn, not yet durable
  // Jobs became durable in the last commit: dispatch them next turn without waiting.
  bool redispatch_ = false;
  std::vector<PendingReply> pending_replies_;

  struct StatusWaiter {
    PendingReply pending;  // routing, with the request id set
    wire::StatusRequest request;
    std::chrono::steady_clock::time_point deadline;
  };

  static constexpr size_t kMaxStatusWaiters = 1024;
  static constexpr uint32_t kMaxStatusWaitMs = 60'000;
  std::vector<StatusWaiter> status_waiters_;

  struct LogAsked {
    uint64_t job = 0;
    uint64_t task = 0;
    uint32_t attempt = 0;
    std::string worker;
  };

  struct LogQuery {
    PendingReply pending;                // the finished attempts' logs, filled already
    std::map<uint64_t, LogAsked> asked;  // LogRequest ids not yet answered
    std::chrono::steady_clock::time_point deadline;
  };

  static constexpr size_t kMaxLogQueries = 256;
  static constexpr size_t kMaxRunningLogs = 16;  // running tasks asked per request
  // Workers answer in milliseconds; this stays well under a client's resend (half its
  // timeout, at least 1 s) so that a silent worker never costs the client a second try.
  static constexpr std::chrono::milliseconds kLogQueryTimeout{800};
  std::vector<LogQuery> log_queries_;
  uint64_t next_log_request_ = 0;
  std::unordered_map<std::string, wire::ResultAck> pending_acks_;  // by routing id

  uint64_t bad_messages_ = 0;
  std::chrono::steady_clock::time_point last_bad_log_{};
};

}  // namespace farmhand::daemon
