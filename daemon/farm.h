// Farm: the broker's in-memory state that mirrors the store — the scheduler,
// the job records the scheduler does not keep, and the publish events.
//
// Everything in a Farm can be rebuilt from the store (Farm::restore), and that
// is how a failed commit is undone: the loop throws the Farm's contents away
// and restores them from what is on disk, so memory is never ahead of disk.
// The components hold a Farm& and reach the scheduler through it, never keep a
// pointer into it across turns. Not thread-safe: the event loop owns it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/result.h"
#include "daemon/core/scheduler.h"
#include "daemon/store/store.h"

namespace farmhand::daemon {

class Clock;

// Per job, what the scheduler does not keep: the submitted spec and its times.
struct JobRecord {
  wire::JobSpec spec;
  int64_t submitted_unix_ms = 0;
  int64_t finished_unix_ms = 0;  // 0 while not finished (retention counts from here)
  int64_t started_unix_ms = 0;   // when its first task was dispatched; 0: not yet
};

// Job records and the idempotency index over them.
class JobBook {
 public:
  void add(core::JobId id, JobRecord record);
  const JobRecord* find(core::JobId id) const;
  std::optional<core::JobId> find_key(const std::string& idempotency_key) const;
  // Records when a job finished (0: reopened), here and in `batch`.
  void set_finished(core::JobId id, int64_t unix_ms, Batch& batch);
  // Records when a job's first task was dispatched, here and in `batch`; a
  // job that has started keeps its first start (a retry does not move it).
  void set_started(core::JobId id, int64_t unix_ms, Batch& batch);
  // A job's attempts' use: summed from the stored attempts at restore
  // (set_usage), added to as results are accepted (each stored in that turn).
  void add_usage(core::JobId id, const AttemptStats& stats);
  void set_usage(core::JobId id, const JobUsage& usage);
  // Zero for a job with no measured attempt.
  JobUsage usage(core::JobId id) const;
  // The job's spec after a live change (`farmhand job set`).
  void set_spec(core::JobId id, wire::JobSpec spec);
  void erase(core::JobId id);
  void clear();

  size_t size() const { return records_.size(); }

  const std::unordered_map<core::JobId, JobRecord>& records() const { return records_; }

 private:
  std::unordered_map<core::JobId, JobRecord> records_;
  std::unordered_map<std::string, core::JobId> keys_;
  std::unordered_map<core::JobId, JobUsage> usage_;  // jobs with a measured attempt
};

// Accepted publish events in order of arrival, and where each id is.
class EventBook {
 public:
  void add(wire::EventInfo event);
  const wire::EventInfo* find(const std::string& event_id) const;

  const std::vector<wire::EventInfo>& all() const { return events_; }

  // Drops the events `drop` says so of, keeping the order.
  template <typename Pred>
  size_t erase_if(Pred drop) {
    size_t n = std::erase_if(events_, drop);
    if (n > 0) reindex();
    return n;
  }

  // Patterns published from watched folders (for `republish: false`).
  std::set<std::string>& watch_published() { return watch_published_; }

  void clear();

 private:
  void reindex();
  std::vector<wire::EventInfo> events_;
  std::unordered_map<std::string, size_t> index_;
  std::set<std::string> watch_published_;
};

struct Farm {
  explicit Farm(core::Scheduler::Options options)
      : scheduler_options(options), scheduler(std::make_unique<core::Scheduler>(options)) {}

  // Replaces the contents with what `store` holds. Restored running tasks wait
  // `hold_dispatch` for their workers to report before they are handed out
  // again. Finish times the store lacks (older databases) go into `staged`.
  // Limits are the configured ones, then those the store holds from
  // `farmhand limit set`.
  [[nodiscard]] Result<void> restore(Store& store, const Clock& clock, core::Millis hold_dispatch,
                                     spdlog::logger& log, Batch& staged,
                                     const std::map<std::string, uint32_t>& configured_limits);

  core::Scheduler::Options scheduler_options;
  std::unique_ptr<core::Scheduler> scheduler;
  JobBook jobs;
  EventBook events;
  // The replies of client actions by idempotency key (ActionKeyRow.reply), so a
  // resent action is answered without acting again.
  std::unordered_map<std::string, ActionKeyRow> action_keys;
};

// Wire names of the scheduler's states.
wire::TaskState to_wire(core::TaskState s);
std::optional<core::TaskState> task_state_from_wire(wire::TaskState s);
wire::JobState to_wire(core::JobState s);
// One letter per task state, for grids: w q r s f d c (backoff is q).
char task_state_letter(core::TaskState s);
bool is_finished(core::JobState s);

// The scheduler's view of a submitted spec. Shared by submit and restore, so a
// restored job is exactly the job that was accepted.
[[nodiscard]] Result<core::JobSpec> to_core_spec(const wire::JobSpec& spec);
// Whether the wire spec has the scheduler's chunk runs, and makes it have them.
bool same_chunk_runs(const wire::JobSpec& spec, const core::JobSpec& core_spec);
void set_chunk_runs(wire::JobSpec& spec, const core::JobSpec& core_spec);

// An attempt's use as a worker reported it, made safe to store and sum (no
// negative or non-finite seconds, a short signal name); and back.
AttemptStats attempt_stats(const wire::AttemptStats& stats);
void to_wire(const AttemptStats& stats, wire::AttemptStats& out);

// A job's summary as `status`, `ls` and `events` show it; untouched if unknown.
void fill_summary(const Farm& farm, core::JobId id, wire::JobSummary& summary);

// The summary in two parts, for those who keep it as a job runs (the HTTP
// front's job board): what changes only with its spec (a submit, `job set`,
// a memory retry), and what moves with every task (state, counts, frames
// done, times, usage), cheap to take and to keep.
void fill_summary_fixed(const Farm& farm, core::JobId id, wire::JobSummary& summary);

struct JobMoving {
  wire::JobState state = wire::JOB_STATE_UNSPECIFIED;
  std::array<uint64_t, core::kTaskStateCount> counts{};
  uint64_t frames_succeeded = 0;
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
  JobUsage usage;
};

std::optional<JobMoving> job_moving(const Farm& farm, core::JobId id);
void apply_moving(const JobMoving& moving, wire::JobSummary& summary);

// The name a job is listed under: its own, else its kind (and command).
std::string job_display_name(const wire::JobSpec& spec);

// What a list filter looks at, from a job's record or its summary: `farmhand
// ls` (the loop) and GET /api/v1/jobs (HTTP threads) filter alike.
struct JobFacts {
  wire::JobState state = wire::JOB_STATE_UNSPECIFIED;
  const std::string& user;
  const std::string& project;
  int64_t submitted_unix_ms = 0;
  const google::protobuf::Map<std::string, std::string>& labels;
  const std::string& name;
};

// `needle`: the request's name_contains, lower-cased.
bool job_matches(const wire::ListRequest& request, const std::string& needle, const JobFacts& job);

}  // namespace farmhand::daemon
