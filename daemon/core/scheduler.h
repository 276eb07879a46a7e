// Scheduler: the broker's pure decision logic — jobs, tasks, leases, workers.
//
// It consumes events (submit, worker ready, heartbeat, result, tick, ...) and
// returns decisions (dispatches, cancel orders, state changes to persist). It
// owns no socket, file, SQL or thread and never reads the clock: time arrives
// as a monotonic `Millis` value in every call, and jitter comes from a seeded
// generator. So a test is a list of calls and the decisions they return.
//
// Memory is per task (chunk), not per frame: a task is two bytes (state and
// attempt count) plus four for frame-by-frame dependencies; everything bigger
// (leases, errors, backoff timers, the attempts of budgets that `retry` closed)
// exists only for the few tasks that need it.
//
// Not thread-safe: the broker's event loop owns it.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::core {

using Millis = std::chrono::milliseconds;  // monotonic time since an arbitrary origin
using JobId = uint64_t;
using TaskIndex = uint32_t;
using LeaseToken = uint64_t;
using WorkerId = uint64_t;  // one connection session of a worker, assigned by the shell

// kBackoff is internal: a queued task waiting out its retry delay (reported as queued).
enum class TaskState : uint8_t {
  kWaiting,
  kQueued,
  kRunning,
  kSucceeded,
  kFailed,
  kDead,
  kCancelled,
  kBackoff,
};

inline constexpr int kTaskStateCount = 8;

enum class JobState : uint8_t { kQueued, kRunning, kPaused, kSucceeded, kFailed, kCancelled };

std::string_view task_state_name(TaskState state);  // "queued" for kBackoff
std::string_view job_state_name(JobState state);
bool is_terminal(TaskState state);

// A run of tasks of one size: `tasks` tasks of `frames` frames each.
struct ChunkRun {
  uint64_t tasks = 0;
  uint32_t frames = 0;

  bool operator==(const ChunkRun&) const = default;
};

// Appends to `runs` the frames from position `from` on, cut into chunks of at
// most `size` frames whose sizes differ by at most one (1-12 by 5: 4, 4, 4);
// with `max_gap` > 0, the frames are first split where one is more than
// `max_gap` after the one before it (or not after it), and each part is cut
// on its own (1: runs of consecutive frames).
void append_chunk_runs(const common::FrameSet& frames, uint64_t from, uint64_t size,
                       uint64_t max_gap, std::vector<ChunkRun>& runs);

struct JobSpec {
  std::string kind;
  common::FrameSet frames;
  uint32_t chunk = 1;
  // Chunks of other sizes, in frame order (empty: every task `chunk` frames, the
  // last fewer). Set at submit (OpenJD's balanced chunks) or by adaptation.
  std::vector<ChunkRun> chunk_runs;
  // Adaptive chunks (OpenJD's targetRuntimeSeconds): once tasks succeed, the
  // untouched tail of the job is cut again into chunks that should take this
  // long, by the mean time per frame so far. 0: chunks keep their size.
  uint32_t chunk_target_s = 0;
  uint32_t chunk_now = 0;  // the frames a chunk of the tail was last cut to (0: chunk)
  // A chunk never spans two frames further apart than this (1: consecutive
  // frames only, OpenJD's CONTIGUOUS); 0: any.
  uint64_t chunk_max_gap = 0;
  // Tags a worker must have besides the pool: one of each set (OpenJD host
  // attributes, as "name=value" tags). Empty: none.
  std::vector<std::vector<std::string>> tag_choices;
  int32_t priority = 0;
  std::string pool;  // empty: any worker; else only workers tagged with it
  std::vector<JobId> after;
  JobId after_frames = 0;
  uint32_t max_attempts = 0;  // 0: Options::default_max_attempts
  std::chrono::seconds timeout{0};
  // The interactive lane: short, publish-driven media work. Its tasks may also
  // use the slots that workers reserve for the lane, which batch work never does.
  bool interactive = false;
  // Named shared resources (licences, a database's connections) each running
  // task holds one token of; at most the limit's capacity run at once, farm-wide.
  std::vector<std::string> limits;
  uint32_t max_running = 0;  // at most this many running tasks; 0: no cap
  // Fair share groups jobs by project (Options::shares / set_shares()).
  std::string project;
  // What each task needs of a worker besides a slot; 0: nothing (only the slot).
  uint32_t cores = 0;
  uint64_t memory = 0;  // bytes
  uint32_t gpus = 0;    // only workers with as many GPUs free take a task
  // > 1: a task the out-of-memory killer stopped raises the job's memory request
  // to its peak (or the request, if larger) times this for the tasks that follow.
  double memory_retry_factor = 0;
};

struct WorkerSpec {
  std::string name;
  uint32_t slots = 1;  // for any job
  std::vector<std::string> tags;
  uint32_t interactive_slots = 0;  // reserved: only interactive-lane jobs use these
  // Random per worker process, the same across its reconnects: it tells a worker
  // reconnecting from a clone that has the same name (cloned render nodes share a
  // host name, the default name). Empty from workers that predate it.
  std::string instance;
  std::string host;  // for messages only
  // What tasks may book on it; 0: unknown (an older worker): not packed against.
  uint32_t cores = 0;
  uint64_t memory = 0;  // bytes
  uint32_t gpus = 0;    // GPUs it has (0: none: it takes no task that asks for one)
  // How its tasks are isolated (Ready.isolation), for `farmhand workers` only.
  std::string isolation{};
};

// A wrangler's say over a worker, by name (it outlives sessions and restarts):
// a disabled or draining worker takes no new task; its running ones finish.
// Draining differs in what it is for: someone waits for the worker to be idle.
enum class WorkerControl : uint8_t { kEnabled, kDisabled, kDraining };

std::string_view worker_control_name(WorkerControl control);  // "enabled", ...

// Bad-host avoidance: a worker that failed a job's attempts too often takes no
// more of that job's tasks (until `farmhand job unblock`).
struct WorkerBlock {
  JobId job = 0;
  std::string worker;  // by name: a block outlives the worker's sessions
  uint32_t failures = 0;
  std::string reason;  // the last failure's error
};

// A block to store (blocked) or to delete (!blocked: `job unblock` cleared it).
struct BlockChange {
  WorkerBlock block;
  bool blocked = true;
};

// A live change to a job (`farmhand job set`): each field given replaces the
// spec's. Running tasks keep running under what they started with (their limit
// tokens, their pool); the change rules what is dispatched next.
struct JobUpdate {
  std::optional<int32_t> priority;
  std::optional<uint32_t> max_running;
  std::optional<std::string> pool;
  std::optional<uint32_t> max_attempts;  // 0: Options::default_max_attempts
  std::optional<std::chrono::seconds> timeout;
  std::optional<std::vector<std::string>> limits;
  std::optional<uint32_t> cores;
  std::optional<uint64_t> memory;
  std::optional<uint32_t> gpus;
  std::optional<double> memory_retry_factor;
};

// How a failed attempt ended, beyond its error text.
struct TaskOutcome {
  bool out_of_memory = false;  // the OOM killer (or the worker's own enforcement) stopped it
  uint64_t peak_memory = 0;    // bytes; 0: unknown
};

// Which tasks of a job a task-level action takes (`farmhand retry|kill|skip
// JOB --tasks 3,7-9 | --frames 1001-1010 | --state dead`). Each part given
// narrows the choice; none given: every task of the job.
struct TaskSelection {
  std::optional<common::FrameSet> tasks;   // task indices, fileseq syntax
  std::optional<common::FrameSet> frames;  // the tasks that cover any of these frames
  std::optional<TaskState> state;          // kQueued also takes tasks backing off

  bool names_tasks() const { return tasks.has_value() || frames.has_value(); }
};

// What worker_ready() made of a Ready. A refused session is not registered: the
// shell tells the worker why and forgets the connection.
struct WorkerReadyVerdict {
  bool accepted = true;
  std::string name;     // the name the session runs under (renamed duplicates differ)
  std::string refusal;  // why not, one line, when !accepted
  // Earlier sessions this one replaced, which the scheduler no longer knows.
  std::vector<WorkerId> replaced;
};

struct TaskRef {
  JobId job = 0;
  TaskIndex task = 0;
  LeaseToken lease = 0;
};

// ---- decisions

struct Dispatch {
  WorkerId worker = 0;
  JobId job = 0;
  TaskIndex task = 0;
  LeaseToken lease = 0;
  uint32_t attempt = 0;
};

struct CancelOrder {
  WorkerId worker = 0;
  TaskRef ref;
  std::string reason;
};

// A task's durable state; the store upserts one row per change.
struct TaskChange {
  JobId job = 0;
  TaskIndex task = 0;
  TaskState state = TaskState::kQueued;
  // Every attempt so far, over all retries: the next attempt is number attempts + 1,
  // so a retried task's logs never overwrite those of its earlier attempts.
  uint32_t attempts = 0;
  // The attempts made before the current budget of max_attempts began (budgets are
  // closed by retry()): only attempts - budget_base count against max_attempts.
  uint32_t budget_base = 0;
  LeaseToken lease = 0;
  std::string worker;  // worker name for running tasks
  std::string error;
};

// A job's durable flags changed (the job row itself is written at submit by the shell).
struct JobChange {
  JobId job = 0;
  bool paused = false;
  bool cancelled = false;
};

// Why a worker counts as lost.
enum class WorkerLostCause : uint8_t {
  kDisconnected,  // it said goodbye
  kSilent,        // its liveness ran out
};

std::string_view worker_lost_cause_name(WorkerLostCause cause);

// Something the shell should log: failures and lifecycle.
struct Notice {
  enum class Kind {
    kJobFinished,
    kTaskFailed,
    kTaskDead,
    kLeaseExpired,
    kWorkerLost,
    kWorkerJoined,
    kWorkerBlocked,  // for job; reason: why
  };
  Kind kind;
  JobId job = 0;
  TaskIndex task = 0;
  uint32_t attempt = 0;
  std::string worker;
  std::string reason;  // kTaskFailed, kTaskDead, kLeaseExpired: the task's error, free text
  JobState job_state = JobState::kQueued;
  WorkerLostCause lost_cause = WorkerLostCause::kDisconnected;  // kWorkerLost
  bool again = false;  // kWorkerJoined: a silent worker's session was heard from again
  bool every_worker_blocked = false;  // kWorkerBlocked: no live worker is left for the job
};

struct Outbox {
  std::vector<TaskChange> tasks;
  std::vector<JobChange> jobs;
  std::vector<CancelOrder> cancels;
  std::vector<Notice> notices;
  std::vector<BlockChange> blocks;
  // Jobs whose spec the scheduler changed itself (a memory request raised after
  // an out-of-memory failure): store job_spec() again.
  std::vector<JobId> specs;

  bool empty() const {
    return tasks.empty() && jobs.empty() && cancels.empty() && notices.empty() && blocks.empty() &&
           specs.empty();
  }
};

// ---- queries

struct RunningTask {
  JobId job = 0;
  TaskIndex task = 0;
  uint32_t attempt = 0;
  std::string worker;
  Millis started{0};
};

struct TaskView {
  TaskIndex task = 0;
  TaskState state = TaskState::kQueued;
  uint32_t attempts = 0;  // over all retries
  std::string error;
};

struct JobView {
  JobId id = 0;
  JobState state = JobState::kQueued;
  uint64_t task_count = 0;
  uint64_t frames_succeeded = 0;                   // the frames of its succeeded tasks
  std::array<uint64_t, kTaskStateCount> counts{};  // by TaskState, kBackoff folded into kQueued
  bool paused = false;
  bool cancelled = false;
};

struct WorkerView {
  WorkerId id = 0;
  WorkerSpec spec;
  bool alive = true;
  Millis last_seen{0};
  std::vector<TaskRef> running;
  WorkerControl control = WorkerControl::kEnabled;
  std::string control_reason;
  uint32_t cores_used = 0;  // booked by its running tasks
  uint64_t memory_used = 0;
  uint32_t gpus_used = 0;
};

// Worker sessions by state, counted without copying them (for metrics, once a
// second: workers() copies every session's spec and running tasks).
struct WorkerTally {
  uint64_t idle = 0;
  uint64_t busy = 0;  // running a task, enabled
  uint64_t disabled = 0;
  uint64_t draining = 0;
  uint64_t lost = 0;        // not alive, not yet forgotten
  uint64_t slots = 0;       // of live workers, reserved interactive slots included
  uint64_t slots_busy = 0;  // of live workers, running a task
};

// Farm-wide tallies, kept up to date as tasks and jobs change: a metrics scrape
// walks no job (walking 100,000 jobs once a second stalled dispatch).
struct FarmTotals {
  std::array<uint64_t, 6> jobs{};                 // by JobState
  std::array<uint64_t, kTaskStateCount> tasks{};  // by TaskState (backoff apart)
  // Running tasks of each pool and project that has running tasks or unfinished
  // jobs (views into the scheduler: valid until it next changes).
  std::vector<std::pair<std::string_view, uint64_t>> running_by_pool;
  std::vector<std::pair<std::string_view, uint64_t>> running_by_project;
};

// A project's fair share: its weight and the slots its tasks run in now.
struct ShareView {
  std::string project;
  uint32_t weight = 1;
  uint64_t running = 0;
  uint64_t queued_jobs = 0;  // jobs of it with queued tasks
  bool named = false;        // in the configured shares; else in the default share
};

// A named limit: its capacity (nullopt: named by a job but not configured, so
// nothing holding it is dispatched), the tokens running tasks hold, and the
// jobs parked until a token frees.
struct LimitView {
  std::string name;
  std::optional<uint32_t> capacity;
  uint32_t in_use = 0;
  uint64_t waiting_jobs = 0;
};

// Why a job with queued tasks is not dispatched now (beyond "no free slot").
struct JobHold {
  // kUnsatisfiable: no live worker that serves the job has the cores and
  // memory one task asks for; cores/memory: the largest any of them has.
  // kTags: no live worker that serves the job has the tags it asks for.
  enum class Kind { kNone, kLimit, kMaxRunning, kBlocked, kUnsatisfiable, kTags };
  Kind kind = Kind::kNone;
  std::string limit;  // kLimit
  std::optional<uint32_t> capacity;
  uint32_t in_use = 0;               // kLimit: tokens in use; kMaxRunning: running tasks
  std::vector<std::string> workers;  // kBlocked: every live worker that serves the job
  uint32_t cores = 0;                // kUnsatisfiable (0: no worker serves the pool)
  uint64_t memory = 0;
  uint32_t gpus = 0;
  std::string tags{};  // kTags: the choices no such worker meets ("site=a|site=b, gpu=a100")
};

enum class ResultVerdict { kAccepted, kStale };

class Scheduler {
 public:
  struct Options {
    Millis lease_ttl{30'000};
    Millis heartbeat_interval{1'000};
    uint32_t heartbeat_liveness = 3;
    Millis backoff_base{2'000};
    Millis backoff_max{300'000};
    uint32_t default_max_attempts = 3;
    // A task past its timeout by this much is failed by the broker even if its
    // worker never reports (the worker enforces the timeout itself first).
    Millis timeout_grace{10'000};
    // A second live worker under a taken name (a cloned render node) joins as
    // "name-2", "name-3", ... instead of being refused.
    bool rename_duplicates = false;
    // After this many failed attempts of one job on one worker, that worker takes
    // no more of the job's tasks. 0: never.
    uint32_t block_after_failures = 3;
    uint64_t seed = 1;
  };

  explicit Scheduler(Options options);
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // ---- jobs

  // Validates and creates a job; the new id is the next in sequence. A job
  // submitted with durable=false is not dispatched until committed(): a task
  // must never run for a job that a crash could forget, or the job's id would
  // be handed out again and a late result could land on the wrong job.
  [[nodiscard]] Result<JobId> submit(JobSpec spec, Millis now, bool durable = true);

  // The store has the job, or will have it before anything dispatched from it
  // reaches a worker (the shell sends a turn's Assigns after its commit): its
  // tasks may be dispatched.
  void committed(JobId job);

  // The store could not take the job: forget it entirely. Only for jobs never
  // committed (nothing of them has run).
  void abandon(JobId job);

  // Retention: forgets a finished job (succeeded, failed or cancelled, nothing
  // of it running or backing off) that no remaining job depends on. False, and
  // nothing changes, otherwise. Ids are never handed out again: the newest job
  // is never forgotten, so a restart continues after it.
  bool forget(JobId job);

  [[nodiscard]] Result<uint64_t> cancel(JobId job, Millis now);
  [[nodiscard]] Result<uint64_t> pause(JobId job, Millis now);
  [[nodiscard]] Result<uint64_t> resume(JobId job, Millis now);
  // Requeues the job's dead, failed and cancelled tasks with a fresh budget of
  // max_attempts; their attempt numbers continue (a task dead after 3 runs attempt 4).
  // Workers blocked for the job are unblocked: every one may try again.
  [[nodiscard]] Result<uint64_t> retry(JobId job, Millis now);
  // Changes a job live (see JobUpdate). Refused for a finished job.
  [[nodiscard]] Result<void> update_job(JobId job, const JobUpdate& update);

  // ---- task-level actions (scheduler_tasks.cpp)
  //
  // Each acts on the tasks of one job that a TaskSelection picks, returns how
  // many it changed (0 when none matched: not an error), and refuses with one
  // line an unknown job or a selection naming a task or frame the job lacks.

  // Re-runs the selected finished tasks with a fresh budget of max_attempts;
  // attempt numbers continue. Without --tasks/--frames it takes the broken
  // ones (failed, dead, cancelled), as job-level retry() does; tasks named by
  // --tasks/--frames are re-run when they succeeded too (like OpenCue's "retry
  // frames": a wrangler re-renders a bad frame), and waiting, queued or
  // running ones are left as they are (kill restarts a running one). A state
  // filter must name a finished state. A cancelled job is un-cancelled.
  [[nodiscard]] Result<uint64_t> retry_tasks(JobId job, const TaskSelection& selection, Millis now);
  // Stops the selected running tasks' attempts (a CancelOrder to the worker;
  // the lease and its limit tokens are released, so a late result of it is
  // stale). Without `fail` each goes back to the queue as a new attempt that
  // uses none of its budget; with `as_failure` (`--fail`) the attempt fails with `reason`, as
  // any failure would (backoff, or dead after max_attempts).
  [[nodiscard]] Result<uint64_t> kill_tasks(JobId job, const TaskSelection& selection,
                                            bool as_failure, const std::string& reason, Millis now);
  // Marks the selected tasks that have not succeeded as succeeded without
  // running them (OpenCue's "eat"); running ones are stopped first. Their
  // error text says "skipped"; their frame-by-frame dependants are released,
  // and the job's whole-job dependants once it thereby succeeds. Refused for
  // a cancelled job.
  [[nodiscard]] Result<uint64_t> skip_tasks(JobId job, const TaskSelection& selection, Millis now);
  // Runs a finished job (succeeded, failed or cancelled) again: the selected
  // tasks (all by default) go back to the queue with a fresh budget and their
  // attempt numbers continue; a cancelled job is un-cancelled. Refused for a
  // job that has not finished. Downstream jobs are untouched.
  [[nodiscard]] Result<uint64_t> requeue(JobId job, const TaskSelection& selection, Millis now);

  // ---- bad hosts

  // Clears the job's blocks: of one worker, or of all (worker empty). Returns
  // how many were cleared; the failure counts start again from zero.
  [[nodiscard]] Result<uint64_t> unblock(JobId job, const std::string& worker);
  std::vector<WorkerBlock> blocked_workers(JobId job) const;

  // ---- limits

  // Creates or changes a limit. Lowering a capacity under what is in use stops
  // nothing that runs; nothing more is dispatched until use falls below it.
  // Raising it wakes the jobs that wait for the limit.
  void set_limit(const std::string& name, uint32_t capacity);
  // A limit no longer configured: jobs naming it wait (running tasks keep
  // their tokens until they end).
  void unset_limit(const std::string& name);
  std::vector<LimitView> limits() const;

  // ---- fair share

  // Weights by project (each >= 1). Projects not named share one default share
  // of weight 1. Within a priority, the next slot goes to the share running the
  // fewest tasks for its weight, so contended slots converge to the weights; a
  // share with nothing queued leaves its part to the others. Empty: no fair
  // share (jobs of one priority share slots job by job, whatever their project).
  void set_shares(const std::map<std::string, uint32_t>& weights);
  std::vector<ShareView> shares() const;

  // ---- restore after a restart (before any other call; limits first)

  [[nodiscard]] Result<void> restore_job(JobId id, JobSpec spec, bool paused, bool cancelled);
  // attempts and budget_base as in TaskChange: over all retries, and before the current budget.
  void restore_task(JobId job, TaskIndex task, TaskState state, uint32_t attempts,
                    uint32_t budget_base, LeaseToken lease, const std::string& worker,
                    const std::string& error);
  void restore_block(const WorkerBlock& block);
  // Derives untouched tasks' states, dependency counters and queues.
  void finish_restore(Millis now);

  // ---- workers

  // A worker session announced itself. `running` is what it still runs (after a
  // reconnect); tasks it no longer has are requeued, tasks it runs that are no
  // longer its own get cancel orders.
  //
  // A session under a known name is that worker reconnecting when its instance is
  // the same (or either is empty: workers that predate instances), and replaces
  // the old session. A different instance is another process: it takes the name
  // over from a session whose liveness ran out, or whose lease it reports (the same
  // worker restarted); otherwise, while that session is alive, it is refused (or
  // renamed, Options::rename_duplicates) and the live one is untouched.
  WorkerReadyVerdict worker_ready(WorkerId worker, WorkerSpec spec,
                                  const std::vector<TaskRef>& running, Millis now);

  // Any message from the worker proves it alive.
  void worker_seen(WorkerId worker, Millis now);

  // A worker said goodbye: its tasks go back to the queue without using an attempt.
  void worker_gone(WorkerId worker, Millis now);

  bool knows_worker(WorkerId worker) const { return workers_.count(worker) != 0; }

  // Enables, disables or drains the worker of that name (live or not), with a
  // reason for `farmhand workers`. Enabling forgets the reason.
  void control_worker(const std::string& name, WorkerControl control, std::string reason);
  // Whether a session or a control knows the name.
  bool knows_worker_name(const std::string& name) const;

  // Extends the lease if it is still the task's current lease.
  bool renew_lease(WorkerId worker, const TaskRef& ref, Millis now);
  // Whether `ref` is the task's current lease and that worker holds it.
  bool holds_lease(WorkerId worker, const TaskRef& ref) const;

  ResultVerdict task_result(WorkerId worker, const TaskRef& ref, bool succeeded, const Error& error,
                            Millis now, const TaskOutcome& outcome = {});

  // Expires leases, times out tasks, ends backoffs, notices silent workers.
  void tick(Millis now);

  // Assigns ready tasks to free worker slots, at most `max` of them.
  std::vector<Dispatch> dispatch(Millis now, size_t max = SIZE_MAX);

  // Dispatching is held until `until` (after a restart, so workers can report
  // what they still run before their tasks are handed out again).
  void hold_dispatch_until(Millis until) { hold_until_ = until; }

  // The earliest time tick() has work to do, if any.
  std::optional<Millis> next_deadline() const;

  Outbox take_outbox();

  // Nothing decided since the last take_outbox() (no change waits to be stored).
  bool outbox_empty() const { return outbox_.empty(); }

  // ---- queries

  std::optional<JobView> job(JobId id) const;
  std::vector<JobId> job_ids() const;
  std::optional<JobId> last_job_id() const;
  const JobSpec* job_spec(JobId id) const;
  std::vector<RunningTask> running_tasks(JobId job, size_t limit) const;
  std::vector<TaskView> last_errors(JobId job) const;
  std::vector<TaskView> tasks(JobId job, uint64_t offset, uint32_t limit,
                              std::optional<TaskState> filter) const;
  // The states of tasks [offset, offset + limit) as reported (backoff is
  // queued), appended to `out`: a million tasks cost a pass over an array.
  void task_states(JobId job, uint64_t offset, uint64_t limit, std::vector<TaskState>& out) const;
  // The frames a task covers.
  common::FrameSet task_frames(JobId job, TaskIndex task) const;
  std::vector<WorkerView> workers() const;
  WorkerTally worker_tally() const;
  FarmTotals totals() const;
  std::string worker_name(WorkerId id) const;
  // Whether a live worker would take a job of this pool (is tagged with it; any
  // live worker for ""): a job whose pool no one serves waits until one joins.
  bool pool_served(const std::string& pool) const;
  // What holds back a job's queued tasks, if anything: a full (or unconfigured)
  // limit, its max_running, or every live worker that serves it being blocked.
  JobHold hold(JobId job) const;

  // For tests: the first of the scheduler's own indexes (run queues, parked
  // jobs, limit tokens, reserved slots, session lookups) found out of step
  // with what it indexes; empty when none is. Walks everything.
  std::string audit() const;

 private:
  struct Job;

  struct Lease {
    WorkerId worker = 0;  // 0: restored from the store, no session has claimed it yet
    std::string worker_name;
    LeaseToken token = 0;
    uint32_t attempt = 0;
    Millis started{0};
    Millis expires{0};
    bool interactive_slot = false;      // occupies one of the worker's reserved slots
    std::vector<uint32_t> limits_held;  // a token of each (limit ids)
    uint32_t project = 0;               // counted in projects_[project].running
    uint32_t pool = 0;                  // counted in pools_[pool].running
    uint32_t cores = 0;                 // booked on the worker
    uint64_t memory = 0;
    uint32_t gpus = 0;
  };

  // A job's place in a run queue: (-priority, running tasks, id), best first:
  // the first match gets the next slot, so equal-priority jobs share slots fairly.
  using QueueKey = std::tuple<int64_t, uint64_t, JobId>;

  // Jobs of one share group (a project when shares are on; else every job), best first.
  struct JobQueue {
    std::map<QueueKey, Job*> all;
    std::map<QueueKey, Job*> interactive;  // the subset in the interactive lane
    // The requests of the jobs in `all` that ask for cores or memory: a worker
    // with less free than the smallest skips the whole queue at once.
    std::multiset<uint32_t> cores;
    std::multiset<uint64_t> memory;

    uint32_t least_cores() const { return all.size() > cores.size() ? 0 : *cores.begin(); }

    uint64_t least_memory() const { return all.size() > memory.size() ? 0 : *memory.begin(); }
  };

  // Jobs of one pool, by share group.
  using PoolQueue = std::map<uint32_t, JobQueue>;

  // Jobs queued by their pool: a worker looks only at the pools it serves ("" and
  // its tags), so jobs of other pools cost it nothing however many are queued.
  struct PoolQueues {
    std::unordered_map<std::string, PoolQueue> by_pool;
    uint64_t size = 0;

    void insert(const Job& job, const QueueKey& key);  // under job.queued_* (set first)
    void erase(const Job& job);

    bool empty() const { return size == 0; }
  };

  // A project's share: `running` counts its leases (whether shares are on or not).
  // Only projects named in the shares have a queue group of their own; every
  // other project's jobs share group 0 (so a client cannot make picks slow by
  // inventing projects: groups are bounded by the config).
  struct Project {
    std::string name;
    uint32_t weight = 1;
    uint64_t running = 0;
    bool named = false;      // in the configured shares
    uint64_t open_jobs = 0;  // not finished (for metrics)
  };

  // A pool's running tasks and unfinished jobs (for metrics).
  struct Pool {
    std::string name;
    uint64_t running = 0;
    uint64_t open_jobs = 0;
  };

  struct Limit {
    std::string name;
    std::optional<uint32_t> capacity;
    uint32_t in_use = 0;
    // Jobs parked on this limit: it was full when they were last queued. While
    // it has a free token they are candidates for dispatch where they are
    // (pick_job), so a token coming free moves no job.
    PoolQueues waiting;

    bool open() const { return capacity && in_use < *capacity; }
  };

  struct TaskKey {
    JobId job;
    TaskIndex task;
    auto operator<=>(const TaskKey&) const = default;
  };

  struct Worker {
    WorkerSpec spec;
    bool alive = true;
    Millis last_seen{0};
    std::set<TaskKey> running;
    uint32_t interactive_used = 0;  // leases in `running` that hold a reserved slot
    uint32_t cores_used = 0;        // booked by the leases in `running`
    uint64_t memory_used = 0;
    uint32_t gpus_used = 0;

    bool has_tag(const std::string& tag) const {
      return std::find(spec.tags.begin(), spec.tags.end(), tag) != spec.tags.end();
    }

    // Whether it has one tag of each choice.
    bool has_tags(const std::vector<std::vector<std::string>>& choices) const {
      return std::all_of(choices.begin(), choices.end(), [this](const auto& choice) {
        return std::any_of(choice.begin(), choice.end(),
                           [this](const std::string& tag) { return has_tag(tag); });
      });
    }

    // Whether it takes jobs of the pool: any worker for "", else one tagged with it.
    bool serves(const std::string& pool) const {
      return pool.empty() || std::find(spec.tags.begin(), spec.tags.end(), pool) != spec.tags.end();
    }

    // Free for one more task; unknown resources are never short.
    uint32_t free_cores() const {
      return spec.cores == 0 ? UINT32_MAX : spec.cores - std::min(spec.cores, cores_used);
    }

    uint64_t free_memory() const {
      return spec.memory == 0 ? UINT64_MAX : spec.memory - std::min(spec.memory, memory_used);
    }

    // GPUs are never unknown: a worker that reports none has none.
    uint32_t free_gpus() const { return spec.gpus - std::min(spec.gpus, gpus_used); }
  };

  struct Timer {
    Millis at;
    TaskKey key;
    uint64_t generation;

    bool operator>(const Timer& other) const { return at > other.at; }
  };

  using TimerHeap = std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>>;

  Job* find_job(JobId id);
  const Job* find_job(JobId id) const;
  Result<void> check_dependencies(const JobSpec& spec) const;
  Job& create_job(JobId id, JobSpec spec);
  // Removes the job and its links from its upstream jobs and the run queues.
  void erase_job(Job& job);
  void init_untouched_tasks(Job& job);

  // Attempt numbers over all retries: the budget's used attempts plus earlier budgets'.
  static uint32_t total_attempts(const Job& job, TaskIndex task);
  std::string free_name(const std::string& taken) const;
  // Whether the session holds a lease on any of the tasks, under that lease's token.
  bool holds_any(WorkerId worker, const std::vector<TaskRef>& refs) const;
  void set_state(Job& job, TaskIndex task, TaskState state);
  void make_ready(Job& job, TaskIndex task);
  void persist_task(Job& job, TaskIndex task, LeaseToken lease = 0, const std::string& worker = {});
  // Adaptive chunks: takes a success of `frames` frames in `took` and, when the
  // chunks that would take spec.chunk_target_s differ enough from the tail's,
  // cuts the job's untouched tail again.
  void adapt_chunks(Job& job, uint64_t frames, Millis took);
  void record_error(Job& job, TaskIndex task, const std::string& error);
  void finish_task(Job& job, TaskIndex task, TaskState state, const std::string& error, Millis now);
  // `worker`: the name of the worker the attempt failed on ("" if none).
  void fail_attempt(Job& job, TaskIndex task, const std::string& error, const std::string& worker,
                    Millis now);
  void count_failure(Job& job, const std::string& worker, const std::string& error);
  bool blocked_for(const Job& job, const std::string& worker) const;
  // The live, enabled workers that serve the job's pool, when every one of them
  // is blocked for it (nullopt: some is not, or none serves it).
  std::optional<std::vector<std::string>> blocked_eligible_workers(const Job& job) const;
  // Every name is a configured limit; else why not.
  Result<void> check_limits(const std::vector<std::string>& names) const;
  void requeue_without_penalty(Job& job, TaskIndex task);
  // Task-level actions (scheduler_tasks.cpp): the tasks a selection picks, in
  // index order; puts finished tasks back to the queue with a fresh budget;
  // stops a running attempt (cancel order, lease released, its token kept so
  // a late result of it is stale) and returns its token.
  Result<std::vector<TaskIndex>> select_tasks(const Job& job, const TaskSelection& selection) const;
  uint64_t rerun_tasks(Job& job, const std::vector<TaskIndex>& tasks);
  LeaseToken stop_attempt(Job& job, TaskIndex task, const std::string& reason);
  void release_lease(const TaskKey& key);
  void on_task_terminal(Job& job, TaskIndex task, Millis now);
  void fail_waiting_dependants(Job& upstream, TaskIndex task, const std::string& reason,
                               Millis now);
  void update_job_state(Job& job);
  // Puts the job where it belongs now: in runnable_ under its pool, parked on a
  // full limit of its, or in no queue.
  void refresh_runnable(Job& job);
  // Takes the job out of whichever queue holds it.
  void dequeue(Job& job);
  // Whether any job is queued that dispatch could pick.
  bool dispatchable() const;
  std::optional<TaskIndex> pop_ready(Job& job);
  // The best job the worker serves, from runnable_ and from the jobs parked on
  // limits that have a free token (parking those whose limit filled meanwhile).
  Job* pick_job(const Worker& worker, bool interactive_only);
  // Index of the first of the job's limits with no free token, if any.
  std::optional<uint32_t> full_limit(const Job& job) const;
  uint32_t limit_id(const std::string& name);
  // Inserts the lease, taking a token of each of the job's limits, counting it
  // for the job's project and booking it on its worker (if it has one).
  void add_lease(const TaskKey& key, Lease lease);
  // A lease's task runs on the worker now / no longer: its slot, its reserved
  // slot if it holds one, and its cores and memory.
  void attach(Worker& worker, const TaskKey& key, const Lease& lease);
  void detach(Worker& worker, const TaskKey& key, const Lease& lease);
  uint32_t project_id(const std::string& name);
  uint32_t pool_id(const std::string& name);
  std::string audit_totals() const;  // part of audit()
  // The one way a job's state changes once it exists: keeps the totals.
  void set_job_state(Job& job, JobState state);
  // Adds (+1) or takes (-1) the job to or from the job totals and its pool's and
  // project's unfinished jobs.
  void count_job(const Job& job, int sign);
  // The queue group a job is filed under: its project when shares are on.
  uint32_t share_group(const Job& job) const;
  // Whether a job heading `a`'s group should go before one heading `b`'s.
  bool ranks_before(const QueueKey& a, uint32_t group_a, const QueueKey& b, uint32_t group_b) const;
  // The job's queued tasks could never start: no live worker of its pool has
  // what a task asks for. Sets the largest cores and memory there are.
  bool unsatisfiable(const Job& job, JobHold& held) const;
  // Raises the job's memory request after an out-of-memory failure (memory_retry_factor).
  void grow_memory_request(Job& job, const TaskOutcome& outcome);
  Millis backoff_delay(uint32_t attempts);
  LeaseToken new_token();
  void arm_lease_timer(const TaskKey& key, const Lease& lease);
  void drop_worker_session(Worker& worker, const std::vector<TaskRef>& still_running,
                           WorkerId successor, Millis now);
  // The sessions_by_name_ and sessions_by_instance_ entries of a session.
  void index_session(WorkerId id, const WorkerSpec& spec);
  void unindex_session(WorkerId id, const WorkerSpec& spec);
  // Marks silent workers lost, forgets long-lost idle ones, sets next_worker_sweep_.
  void sweep_workers(Millis now);
  // Live sessions under the name (or of the instance), oldest first.
  std::vector<WorkerId> sessions_named(const std::string& name) const;
  std::vector<WorkerId> sessions_of_instance(const std::string& instance) const;

  Options options_;
  std::mt19937_64 rng_;
  std::map<JobId, std::unique_ptr<Job>> jobs_;  // in id order, for restore and retention
  std::unordered_map<JobId, Job*> job_index_;   // the same, for find_job (per task, hot)
  JobId next_job_id_ = 1;
  std::map<TaskKey, Lease> leases_;
  std::vector<Limit> limits_;  // by id; ids are never reused
  // Controls of workers not enabled, by worker name.
  std::map<std::string, std::pair<WorkerControl, std::string>> controls_;
  std::unordered_map<std::string, uint32_t> limit_ids_;
  std::map<WorkerId, Worker> workers_;
  // workers_ by name and by instance: a Ready looks up its own, not every session.
  std::unordered_map<std::string, std::vector<WorkerId>> sessions_by_name_;
  std::unordered_map<std::string, std::vector<WorkerId>> sessions_by_instance_;
  // Leases restored from the store and not claimed by a session yet, by worker
  // name (entries go stale as leases end: checked against leases_ when used).
  std::unordered_map<std::string, std::vector<TaskKey>> unclaimed_leases_;
  // Runnable jobs whose limits all had a free token when they were queued.
  PoolQueues runnable_;
  std::vector<Project> projects_;  // by id; ids are never reused
  std::unordered_map<std::string, uint32_t> project_ids_;
  std::vector<Pool> pools_;  // by id; ids are never reused
  std::unordered_map<std::string, uint32_t> pool_ids_;
  std::array<uint64_t, 6> job_totals_{};                 // by JobState
  std::array<uint64_t, kTaskStateCount> task_totals_{};  // by TaskState
  bool shares_on_ = false;
  uint64_t others_running_ = 0;  // leases of projects not named in the shares (group 0)
  TimerHeap lease_timers_;
  TimerHeap backoff_timers_;
  Millis hold_until_{0};
  // No worker falls silent or is due to be forgotten before this: tick() and
  // next_deadline() walk the workers only then, not every turn of a big farm.
  // A lower bound (last_seen only grows), lowered when a worker joins.
  std::optional<Millis> next_worker_sweep_;
  Outbox outbox_;
};

}  // namespace farmhand::core
