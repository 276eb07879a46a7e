// Store: the broker's durable state, behind an interface (SQLite is the embedded
// default; see sqlite_store.h).
//
// The event loop hands one Batch per turn to commit(): everything in it is
// written together or not at all; once commit() returns it survives farmhandd
// being killed. flush() then makes every commit so far durable (it survives
// the host losing power): the loop sends Assign and Cancel after commit(), and
// acknowledges nothing (client replies, result acks) before flush(). load()
// streams rows back at start-up without holding them all. Implementations
// need not be thread-safe: the event loop is the only caller.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "daemon/core/hook_outbox.h"
#include "daemon/core/scheduler.h"

namespace farmhand::daemon {

struct JobRow {
  core::JobId id = 0;
  std::string spec;  // serialized farmhand.wire.JobSpec
  int64_t submitted_unix_ms = 0;
  std::string idempotency_key;
  bool paused = false;
  bool cancelled = false;
  int64_t finished_unix_ms = 0;  // 0: not finished
  int64_t started_unix_ms = 0;   // when its first task was dispatched; 0: not yet
};

struct TaskRow {
  core::JobId job = 0;
  core::TaskIndex task = 0;
  core::TaskState state = core::TaskState::kQueued;
  uint32_t attempts = 0;     // over all retries (core::TaskChange::attempts)
  uint32_t budget_base = 0;  // attempts before the current budget (core::TaskChange::budget_base)
  core::LeaseToken lease = 0;
  std::string worker;
  std::string error;
};

// What an attempt used (wire::AttemptStats), as its worker measured it.
struct AttemptStats {
  double wall_s = 0;
  double cpu_user_s = 0;
  double cpu_system_s = 0;
  uint64_t peak_rss_bytes = 0;   // 0: unknown
  std::optional<int> exit_code;  // when its last process exited
  std::string exit_signal;       // "SIGKILL" when a signal killed it

  bool operator==(const AttemptStats&) const = default;
};

// A job's use over its attempts that reported one (wire::JobUsage).
struct JobUsage {
  double cpu_s = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t attempts = 0;

  void add(const AttemptStats& stats) {
    cpu_s += stats.cpu_user_s + stats.cpu_system_s;
    peak_rss_bytes = std::max(peak_rss_bytes, stats.peak_rss_bytes);
    ++attempts;
  }
};

struct LogRow {
  core::JobId job = 0;
  core::TaskIndex task = 0;
  uint32_t attempt = 0;
  std::string worker;
  std::string error;
  std::string text;
  std::optional<AttemptStats> stats;  // none: unknown (an older worker)
  // When the attempt started and ended, as the broker saw it; 0: unknown.
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
};

// An accepted publish event.
struct EventRow {
  std::string event_id;
  int64_t received_unix_ms = 0;
  std::string info;  // serialized farmhand.wire.EventInfo
};

// A limit's capacity as set at runtime (`farmhand limit set`).
struct LimitRow {
  std::string name;
  uint32_t capacity = 0;
};

// A worker's control, by name; kEnabled deletes the row.
struct WorkerControlRow {
  std::string name;
  core::WorkerControl control = core::WorkerControl::kEnabled;
  std::string reason;
};

// A job's spec changed live (`farmhand job set`).
struct SpecChange {
  core::JobId job = 0;
  std::string spec;  // serialized farmhand.wire.JobSpec
};

// A client action's reply, stored under the idempotency key it came with.
struct ActionKeyRow {
  std::string key;
  uint64_t fingerprint = 0;  // of the request without its key
  std::string reply;         // serialized farmhand.wire.ClientReply
  int64_t stored_unix_ms = 0;
};

struct Batch {
  std::vector<JobRow> new_jobs;
  std::vector<SpecChange> spec_changes;
  std::vector<core::BlockChange> blocks;
  std::vector<core::JobChange> job_changes;
  std::vector<core::TaskChange> task_changes;
  std::vector<LogRow> logs;
  std::vector<EventRow> events;
  // (job, finished_unix_ms): when a job finished, or 0 when a retry reopened it.
  std::vector<std::pair<core::JobId, int64_t>> finished;
  // (job, started_unix_ms): when a job's first task was dispatched.
  std::vector<std::pair<core::JobId, int64_t>> started;
  // Retention: jobs (with their task rows and logs) and events to delete.
  std::vector<core::JobId> forgotten_jobs;
  std::vector<std::string> forgotten_events;
  std::vector<LimitRow> limits;
  std::vector<WorkerControlRow> worker_controls;
  std::vector<ActionKeyRow> action_keys;
  // Retention: action keys stored before this time are deleted (0: none).
  int64_t forget_action_keys_before = 0;
  // Webhook deliveries, new or changed (attempts, next try, given up): written whole.
  std::vector<core::HookDelivery> hook_deliveries;
  // (hook, delivery id): delivered, so deleted and counted.
  std::vector<std::pair<std::string, std::string>> hooks_delivered;

  bool empty() const {
    return new_jobs.empty() && spec_changes.empty() && blocks.empty() && job_changes.empty() &&
           task_changes.empty() && logs.empty() && events.empty() && finished.empty() &&
           started.empty() && forgotten_jobs.empty() && forgotten_events.empty() &&
           limits.empty() && worker_controls.empty() && action_keys.empty() &&
           forget_action_keys_before == 0 && hook_deliveries.empty() && hooks_delivered.empty();
  }

  void clear() {
    new_jobs.clear();
    spec_changes.clear();
    blocks.clear();
    job_changes.clear();
    task_changes.clear();
    logs.clear();
    events.clear();
    finished.clear();
    started.clear();
    forgotten_jobs.clear();
    forgotten_events.clear();
    limits.clear();
    worker_controls.clear();
    action_keys.clear();
    forget_action_keys_before = 0;
    hook_deliveries.clear();
    hooks_delivered.clear();
  }
};

class Store {
 public:
  virtual ~Store() = default;

  // Writes the whole batch in one transaction (durable once flushed).
  [[nodiscard]] virtual Result<void> commit(const Batch& batch) = 0;

  // Streams every job (in id order), then every task row. A task row whose state
  // code this farmhandd does not know is skipped and reported in one log line,
  // never taken for some other state.
  [[nodiscard]] virtual Result<void> load(const std::function<void(JobRow&&)>& on_job,
                                          const std::function<void(TaskRow&&)>& on_task) = 0;

  // Streams every publish event in order of arrival.
  [[nodiscard]] virtual Result<void> load_events(
      const std::function<void(EventRow&&)>& on_event) = 0;

  // Streams the limits set at runtime.
  [[nodiscard]] virtual Result<void> load_limits(
      const std::function<void(LimitRow&&)>& on_limit) = 0;

  // Streams the workers' controls (disabled, draining).
  [[nodiscard]] virtual Result<void> load_worker_controls(
      const std::function<void(WorkerControlRow&&)>& on_control) = 0;

  // Streams the workers blocked for jobs.
  [[nodiscard]] virtual Result<void> load_blocks(
      const std::function<void(core::WorkerBlock&&)>& on_block) = 0;

  // Streams the stored replies of client actions, by idempotency key.
  [[nodiscard]] virtual Result<void> load_action_keys(
      const std::function<void(ActionKeyRow&&)>& on_key) = 0;

  // Streams the webhook deliveries not delivered (pending or given up), in
  // creation order, then each hook's count of delivered ones.
  [[nodiscard]] virtual Result<void> load_hook_deliveries(
      const std::function<void(core::HookDelivery&&)>& on_delivery,
      const std::function<void(const std::string& hook, uint64_t delivered)>& on_count) {
    (void)on_delivery;
    (void)on_count;
    return {};
  }

  // Writes something small and durable, to learn whether the store can write
  // again after a failed commit.
  [[nodiscard]] virtual Result<void> check_writable() = 0;

  // Makes every commit so far durable. A no-op for a store whose commit() is
  // durable by itself. A failure is not retried: pages a failed flush could
  // not write may be dropped while reported clean (the PostgreSQL "fsyncgate"
  // lesson), so nothing written since the last good flush can be trusted.
  [[nodiscard]] virtual Result<void> flush() { return {}; }

  // Logs of a job's tasks, one task or all (task = nullopt), oldest attempt first.
  [[nodiscard]] virtual Result<std::vector<LogRow>> logs(core::JobId job,
                                                         std::optional<core::TaskIndex> task) = 0;

  // Streams each job's use, summed over its stored attempts that reported one.
  [[nodiscard]] virtual Result<void> load_job_usage(
      const std::function<void(core::JobId, const JobUsage&)>& on_job) = 0;

  // For each task of the job from `first` to `last` (inclusive) that has one:
  // its last stored attempt that reported its use, with no text or error.
  [[nodiscard]] virtual Result<std::vector<LogRow>> last_attempt_stats(core::JobId job,
                                                                       core::TaskIndex first,
                                                                       core::TaskIndex last) = 0;

  // For each task of the job from `first` to `last` (inclusive) that has one:
  // its last stored attempt's number, worker and times (no text, error or use).
  [[nodiscard]] virtual Result<std::vector<LogRow>> last_attempts(core::JobId job,
                                                                  core::TaskIndex first,
                                                                  core::TaskIndex last) = 0;
};

}  // namespace farmhand::daemon
