#include "daemon/core/scheduler.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "daemon/core/scheduler_job.h"

namespace farmhand::core {

namespace {

// A job bigger than this is refused: the scheduler keeps a few bytes per task.
constexpr uint64_t kMaxTasksPerJob = 10'000'000;
constexpr size_t kLastErrorsKept = 10;
// A lost worker with nothing leased is forgotten after this many liveness periods.
constexpr uint32_t kForgetLostWorkerPeriods = 100;
// Restore marks rows it did not see with this value until finish_restore derives them.
constexpr auto kUntouched = static_cast<TaskState>(0xff);

TaskState reported(TaskState s) {
  return s == TaskState::kBackoff ? TaskState::kQueued : s;
}

void push_run(std::vector<ChunkRun>& runs, uint64_t tasks, uint64_t frames) {
  if (tasks == 0) return;
  if (!runs.empty() && runs.back().frames == frames) {
    runs.back().tasks += tasks;
  } else {
    runs.push_back({tasks, static_cast<uint32_t>(frames)});
  }
}

// `length` frames in ceil(length / size) chunks whose sizes differ by at most one.
void push_balanced(std::vector<ChunkRun>& runs, uint64_t length, uint64_t size) {
  if (length == 0) return;
  const uint64_t chunks = (length + size - 1) / size;
  const uint64_t small = length / chunks;
  const uint64_t large = length % chunks;
  push_run(runs, large, small + 1);
  push_run(runs, chunks - large, small);
}

uint64_t task_count_of(const JobSpec& spec) {
  if (spec.chunk_runs.empty()) return (spec.frames.size() + spec.chunk - 1) / spec.chunk;
  uint64_t tasks = 0;
  for (const ChunkRun& run : spec.chunk_runs) tasks += run.tasks;
  return tasks;
}

Result<void> check_chunk_runs(const JobSpec& spec) {
  if (spec.chunk_runs.empty()) return {};
  uint64_t frames = 0;
  for (const ChunkRun& run : spec.chunk_runs) {
    if (run.tasks == 0 || run.frames == 0 || run.tasks > common::FrameSet::kMaxFrames ||
        run.tasks * run.frames > common::FrameSet::kMaxFrames) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad chunk run of {} tasks of {} frames", run.tasks, run.frames));
    }
    frames += run.tasks * run.frames;
  }
  if (frames != spec.frames.size()) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("chunk runs cover {} frames of {}", frames, spec.frames.size()));
  }
  return {};
}

}  // namespace

void append_chunk_runs(const common::FrameSet& frames, uint64_t from, uint64_t size,
                       uint64_t max_gap, std::vector<ChunkRun>& runs) {
  if (size == 0) size = 1;
  if (max_gap == 0) {
    push_balanced(runs, frames.size() - std::min(from, frames.size()), size);
    return;
  }
  // Whether `next` follows `last` closely enough to share a chunk.
  auto close = [max_gap](int64_t last, int64_t next) {
    return next > last && static_cast<uint64_t>(next) - static_cast<uint64_t>(last) <= max_gap;
  };
  uint64_t pending = 0;  // frames of the part in hand
  int64_t last = 0;      // its last frame
  uint64_t offset = 0;
  for (const common::FrameRange& range : frames.ranges()) {
    const uint64_t end = offset + range.count;
    if (end > from) {
      const uint64_t skip = from > offset ? from - offset : 0;
      const int64_t first = range.first + range.step * static_cast<int64_t>(skip);
      const uint64_t count = range.count - skip;
      if (pending > 0 && !close(last, first)) {
        push_balanced(runs, pending, size);
        pending = 0;
      }
      if (count == 1 || close(first, first + range.step)) {
        pending += count;  // the range is one part
      } else {
        // Its frames are parts of their own: the first ends the part in hand,
        // the last may still join the next range.
        push_balanced(runs, pending + 1, size);
        push_run(runs, count - 2, 1);
        pending = 1;
      }
      last = first + range.step * static_cast<int64_t>(count - 1);
    }
    offset = end;
  }
  push_balanced(runs, pending, size);
}

std::string_view worker_lost_cause_name(WorkerLostCause cause) {
  switch (cause) {
    case WorkerLostCause::kDisconnected:
      return "disconnected";
    case WorkerLostCause::kSilent:
      return "silent";
  }
  return "unknown";
}

std::string_view task_state_name(TaskState state) {
  switch (state) {
    case TaskState::kWaiting:
      return "waiting";
    case TaskState::kQueued:
    case TaskState::kBackoff:
      return "queued";
    case TaskState::kRunning:
      return "running";
    case TaskState::kSucceeded:
      return "succeeded";
    case TaskState::kFailed:
      return "failed";
    case TaskState::kDead:
      return "dead";
    case TaskState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string_view job_state_name(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kPaused:
      return "paused";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool is_terminal(TaskState state) {
  return state == TaskState::kSucceeded || is_broken(state);
}

Scheduler::Scheduler(Options options) : options_(options), rng_(options.seed) {
  project_id({});  // id 0: jobs of no project, and the one share group when shares are off
  pool_id({});     // id 0: the default pool
}

uint32_t Scheduler::total_attempts(const Job& job, TaskIndex task) {
  auto it = job.budget_base.find(task);
  return job.attempts[task] + (it == job.budget_base.end() ? 0 : it->second);
}

Scheduler::~Scheduler() = default;

// ------------------------------------------------------------------ jobs

Scheduler::Job* Scheduler::find_job(JobId id) {
  auto it = job_index_.find(id);
  return it == job_index_.end() ? nullptr : it->second;
}

const Scheduler::Job* Scheduler::find_job(JobId id) const {
  auto it = job_index_.find(id);
  return it == job_index_.end() ? nullptr : it->second;
}

Result<void> Scheduler::check_dependencies(const JobSpec& spec) const {
  for (JobId up : spec.after) {
    if (!find_job(up)) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", up));
  }
  if (spec.after_frames != 0 && !find_job(spec.after_frames)) {
    return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", spec.after_frames));
  }
  return {};
}

Result<JobId> Scheduler::submit(JobSpec spec, Millis now, bool durable) {
  if (spec.kind.empty()) return fail(ErrorCode::kInvalidArgument, "job kind is empty");
  if (spec.frames.empty()) return fail(ErrorCode::kInvalidArgument, "empty frame set");
  if (spec.chunk == 0) return fail(ErrorCode::kInvalidArgument, "chunk must be at least 1");
  if (spec.chunk_target_s > 0 && spec.chunk_runs.empty()) {
    // Adaptive chunks start balanced (1-12 by 5 is 1-4, 5-8, 9-12), as they are cut again.
    append_chunk_runs(spec.frames, 0, spec.chunk, spec.chunk_max_gap, spec.chunk_runs);
    spec.chunk_now = spec.chunk;
  }
  if (auto ok = check_chunk_runs(spec); !ok) return fail(ok.error());
  uint64_t tasks = task_count_of(spec);
  if (tasks > kMaxTasksPerJob) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("job of {} tasks over the limit of {}; use a larger chunk", tasks,
                            kMaxTasksPerJob));
  }
  if (spec.max_attempts > kMaxAttemptsLimit) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("max attempts {} over the limit of {}",
                                                         spec.max_attempts, kMaxAttemptsLimit));
  }
  std::sort(spec.after.begin(), spec.after.end());
  spec.after.erase(std::unique(spec.after.begin(), spec.after.end()), spec.after.end());
  if (auto ok = check_dependencies(spec); !ok) return fail(ok.error());
  std::sort(spec.limits.begin(), spec.limits.end());
  spec.limits.erase(std::unique(spec.limits.begin(), spec.limits.end()), spec.limits.end());
  if (auto ok = check_limits(spec.limits); !ok) return fail(ok.error());

  JobId id = next_job_id_;
  Job& job = create_job(id, std::move(spec));
  job.durable = durable;
  init_untouched_tasks(job);
  update_job_state(job);
  refresh_runnable(job);
  (void)now;
  return id;
}

Scheduler::Job& Scheduler::create_job(JobId id, JobSpec spec) {
  if (spec.max_attempts == 0) spec.max_attempts = options_.default_max_attempts;
  spec.max_attempts = std::min(spec.max_attempts, kMaxAttemptsLimit);
  auto job = std::make_unique<Job>();
  job->id = id;
  job->spec = std::move(spec);
  job->task_count = job->index_runs();
  job->state.assign(job->task_count, kUntouched);
  job->attempts.assign(job->task_count, 0);
  for (const std::string& name : job->spec.limits) job->limit_ids.push_back(limit_id(name));
  job->project_id = project_id(job->spec.project);
  job->pool_id = pool_id(job->spec.pool);
  Job& ref = *job;
  count_job(ref, +1);
  jobs_[id] = std::move(job);
  job_index_[id] = &ref;
  next_job_id_ = std::max(next_job_id_, id + 1);
  for (JobId up : ref.spec.after) {
    if (Job* upstream = find_job(up)) upstream->after_dependants.push_back(id);
  }
  if (ref.spec.after_frames != 0) {
    if (Job* upstream = find_job(ref.spec.after_frames)) upstream->frame_dependants.push_back(id);
  }
  return ref;
}

namespace {

// Why a whole-job dependency on `up` can never be met, or "" if it still can.
template <typename JobT>
std::string whole_job_broken_reason(const JobT& up) {
  if (up.cancelled) return fmt::format("upstream job {} cancelled", up.id);
  if (up.broken() == 0) return {};
  for (TaskIndex t = 0; t < up.task_count; ++t) {
    if (is_broken(up.state[t])) {
      if (up.state[t] == TaskState::kCancelled) {
        return fmt::format("upstream job {} cancelled", up.id);
      }
      return fmt::format("upstream job {} frame {} failed", up.id, up.first_frame(t));
    }
  }
  return {};
}

}  // namespace

// Derives every untouched task's state from the job's flags and dependencies.
// Counts are rebuilt from scratch, so this serves both submit and restore.
void Scheduler::init_untouched_tasks(Job& job) {
  job.after_unmet = 0;
  job.after_broken.clear();
  for (JobId up_id : job.spec.after) {
    const Job* up = find_job(up_id);
    if (!up) continue;
    if (up->job_state == JobState::kSucceeded) continue;
    std::string reason = whole_job_broken_reason(*up);
    if (!reason.empty() && job.after_broken.empty()) job.after_broken = reason;
    ++job.after_unmet;
  }
  const Job* frames_up = job.spec.after_frames ? find_job(job.spec.after_frames) : nullptr;
  if (frames_up) job.unmet.assign(job.task_count, 0);

  for (size_t s = 0; s < job.counts.size(); ++s) task_totals_[s] -= job.counts[s];
  job.counts.fill(0);
  job.frames_succeeded = 0;
  std::vector<std::pair<TaskIndex, std::string>> to_fail;
  for (TaskIndex t = 0; t < job.task_count; ++t) {
    TaskState s = job.state[t];
    bool derive = s == kUntouched || s == TaskState::kWaiting;
    if (!derive && job.cancelled && !is_terminal(s) && s != TaskState::kRunning) {
      s = TaskState::kCancelled;
    }
    if (derive) {
      if (job.cancelled) {
        s = TaskState::kCancelled;
      } else {
        std::string reason = job.after_broken;
        bool waits = job.after_unmet > 0;
        if (frames_up) {
          auto [first, last] = job.span(t);
          // (upstream task, the first of our frames it covers): a failure names the frame
          // this task needed, as fail_waiting_dependants does, not the upstream task's first.
          std::vector<std::pair<TaskIndex, int64_t>> ups;
          for (uint64_t i = first; i < last; ++i) {
            int64_t f = job.spec.frames.frame_at(i);
            auto u = frames_up->task_of(f);
            if (u) ups.emplace_back(*u, f);
          }
          std::sort(ups.begin(), ups.end());
          ups.erase(std::unique(ups.begin(), ups.end(),
                                [](const auto& a, const auto& b) { return a.first == b.first; }),
                    ups.end());
          for (auto [u, f] : ups) {
            TaskState us = frames_up->state[u];
            if (us == TaskState::kSucceeded) continue;
            if (is_broken(us) && reason.empty()) {
              reason = us == TaskState::kCancelled
                           ? fmt::format("upstream job {} cancelled", frames_up->id)
                           : fmt::format("upstream job {} frame {} failed", frames_up->id, f);
            }
            ++job.unmet[t];
          }
          waits = waits || job.unmet[t] > 0;
        }
        if (!reason.empty()) {
          s = TaskState::kWaiting;
          to_fail.emplace_back(t, std::move(reason));
        } else {
          s = waits ? TaskState::kWaiting : TaskState::kQueued;
        }
      }
    }
    job.state[t] = s;
    ++job.counts[static_cast<size_t>(s)];
    if (s == TaskState::kSucceeded) {
      auto [first, last] = job.span(t);
      job.frames_succeeded += last - first;
    }
  }
  for (size_t s = 0; s < job.counts.size(); ++s) task_totals_[s] += job.counts[s];
  job.cursor = 0;
  job.ready.clear();
  for (auto& [t, reason] : to_fail) {
    record_error(job, t, reason);
    set_state(job, t, TaskState::kFailed);
    persist_task(job, t);
  }
}

Result<uint64_t> Scheduler::cancel(JobId id, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  if (job->cancelled) return uint64_t{0};
  if (job->terminal() == job->task_count) return fail(job->finished_refusal());
  job->cancelled = true;
  outbox_.jobs.push_back({id, job->paused, true});
  uint64_t changed = 0;
  std::vector<TaskIndex> cancelled;
  for (TaskIndex t = 0; t < job->task_count; ++t) {
    TaskState s = job->state[t];
    if (is_terminal(s)) continue;
    if (s == TaskState::kRunning) {
      TaskKey key{id, t};
      auto it = leases_.find(key);
      if (it != leases_.end()) {
        if (it->second.worker != 0) {
          outbox_.cancels.push_back(
              {it->second.worker, {id, t, it->second.token}, "job cancelled"});
        }
        release_lease(key);
      }
    }
    set_state(*job, t, TaskState::kCancelled);
    // Untouched tasks of a cancelled job need no row: the job's flag restores them.
    if (total_attempts(*job, t) > 0) persist_task(*job, t);
    cancelled.push_back(t);
    ++changed;
  }
  for (TaskIndex t : cancelled) on_task_terminal(*job, t, now);
  update_job_state(*job);
  refresh_runnable(*job);
  return changed;
}

Result<uint64_t> Scheduler::pause(JobId id, Millis) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  if (job->finished()) return fail(job->finished_refusal());
  if (job->paused) return uint64_t{0};
  job->paused = true;
  outbox_.jobs.push_back({id, true, job->cancelled});
  update_job_state(*job);
  refresh_runnable(*job);
  return job->count(TaskState::kQueued) + job->count(TaskState::kBackoff);
}

Result<uint64_t> Scheduler::resume(JobId id, Millis) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  // As pause answers: a finished job has nothing to resume.
  if (job->finished()) return fail(job->finished_refusal());
  if (!job->paused) return uint64_t{0};
  job->paused = false;
  outbox_.jobs.push_back({id, false, job->cancelled});
  update_job_state(*job);
  refresh_runnable(*job);
  return job->count(TaskState::kQueued) + job->count(TaskState::kBackoff);
}

Result<uint64_t> Scheduler::retry(JobId id, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  // A job that succeeded has nothing to retry: answered as pause and resume answer.
  if (job->job_state == JobState::kSucceeded) return fail(job->finished_refusal());
  if (job->cancelled) {
    job->cancelled = false;
    outbox_.jobs.push_back({id, job->paused, false});
  }
  std::vector<TaskIndex> retried;
  for (TaskIndex t = 0; t < job->task_count; ++t) {
    if (!is_broken(job->state[t])) continue;
    if (uint32_t used = total_attempts(*job, t); used > 0) job->budget_base[t] = used;
    job->attempts[t] = 0;
    job->errors.erase(t);
    job->state[t] = kUntouched;
    retried.push_back(t);
  }
  job->last_errors.clear();
  // A retry is a fresh start on every worker too: the blocks go with the failures.
  if (retried.size() > 0) (void)unblock(id, {});
  // Re-derive with current upstream states; counts are rebuilt too.
  init_untouched_tasks(*job);
  for (TaskIndex t = 0; t < job->task_count; ++t) {
    if (job->state[t] == TaskState::kQueued && t < job->cursor) job->ready.push_back(t);
  }
  for (TaskIndex t : retried) {
    if (!is_broken(job->state[t])) persist_task(*job, t);
  }
  update_job_state(*job);
  refresh_runnable(*job);
  (void)now;
  return static_cast<uint64_t>(retried.size());
}

void Scheduler::committed(JobId id) {
  Job* job = find_job(id);
  if (!job || job->durable) return;
  job->durable = true;
  refresh_runnable(*job);
}

void Scheduler::erase_job(Job& job) {
  const JobId id = job.id;
  dequeue(job);
  auto unlink = [id](std::vector<JobId>& ids) {
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  };
  for (JobId up : job.spec.after) {
    if (Job* upstream = find_job(up)) unlink(upstream->after_dependants);
  }
  if (Job* upstream = find_job(job.spec.after_frames)) unlink(upstream->frame_dependants);
  count_job(job, -1);
  for (size_t s = 0; s < job.counts.size(); ++s) task_totals_[s] -= job.counts[s];
  job_index_.erase(id);
  jobs_.erase(id);
}

void Scheduler::abandon(JobId id) {
  Job* job = find_job(id);
  if (!job || job->durable) return;
  erase_job(*job);
  if (id + 1 == next_job_id_) next_job_id_ = id;
}

bool Scheduler::forget(JobId id) {
  Job* job = find_job(id);
  if (!job || !job->durable || id + 1 >= next_job_id_) return false;
  const JobState st = job->job_state;
  if (st != JobState::kSucceeded && st != JobState::kFailed && st != JobState::kCancelled) {
    return false;
  }
  if (job->count(TaskState::kRunning) > 0 || job->count(TaskState::kBackoff) > 0 ||
      !job->after_dependants.empty() || !job->frame_dependants.empty()) {
    return false;
  }
  if (auto lease = leases_.lower_bound({id, 0}); lease != leases_.end() && lease->first.job == id) {
    return false;  // a cancelled task's process is still being stopped
  }
  erase_job(*job);
  return true;
}

// ------------------------------------------------------------------ restore

Result<void> Scheduler::restore_job(JobId id, JobSpec spec, bool paused, bool cancelled) {
  if (find_job(id)) return fail(ErrorCode::kCorrupt, fmt::format("job {} restored twice", id));
  if (spec.chunk == 0 || spec.frames.empty()) {
    return fail(ErrorCode::kCorrupt, fmt::format("job {} has no tasks", id));
  }
  Job& job = create_job(id, std::move(spec));
  job.paused = paused;
  job.cancelled = cancelled;
  return {};
}

void Scheduler::restore_task(JobId job_id, TaskIndex task, TaskState state, uint32_t attempts,
                             uint32_t budget_base, LeaseToken lease, const std::string& worker,
                             const std::string& error) {
  Job* job = find_job(job_id);
  if (!job || task >= job->task_count) return;
  job->touched_end = std::max<uint64_t>(job->touched_end, uint64_t{task} + 1);
  if (state == TaskState::kBackoff) state = TaskState::kQueued;
  job->state[task] = state;
  budget_base = std::min(budget_base, attempts);
  if (budget_base > 0) job->budget_base[task] = budget_base;
  job->attempts[task] = static_cast<uint8_t>(std::min<uint32_t>(attempts - budget_base, 255));
  if (!error.empty()) {
    job->errors[task] = error;
    job->last_errors.push_front(task);
    if (job->last_errors.size() > kLastErrorsKept) job->last_errors.pop_back();
  }
  if (state == TaskState::kRunning) {
    Lease l;
    l.worker = 0;
    l.worker_name = worker;
    l.token = lease;
    l.attempt = total_attempts(*job, task);
    add_lease({job_id, task}, std::move(l));
    unclaimed_leases_[worker].push_back({job_id, task});
  } else if (lease != 0 && state == TaskState::kQueued) {
    job->killed_leases[task].push_back(lease);  // stopped by `farmhand kill`: stale
  }
}

void Scheduler::finish_restore(Millis now) {
  // Jobs only depend on older jobs, so id order derives upstreams first.
  for (auto& [id, job] : jobs_) {
    init_untouched_tasks(*job);
    set_job_state(*job, JobState::kQueued);
    update_job_state(*job);
    refresh_runnable(*job);
  }
  for (auto& [key, lease] : leases_) {
    lease.started = now;
    lease.expires = now + options_.lease_ttl;
    arm_lease_timer(key, lease);
  }
  // Restore is not news: the store already has all of it.
  outbox_ = Outbox{};
}

// ------------------------------------------------------------------ task state

void Scheduler::set_state(Job& job, TaskIndex task, TaskState state) {
  TaskState old = job.state[task];
  if (old != kUntouched) {
    --job.counts[static_cast<size_t>(old)];
    --task_totals_[static_cast<size_t>(old)];
  }
  if ((old == TaskState::kSucceeded) != (state == TaskState::kSucceeded)) {
    auto [first, last] = job.span(task);
    if (state == TaskState::kSucceeded) {
      job.frames_succeeded += last - first;
    } else {
      job.frames_succeeded -= last - first;
    }
  }
  job.state[task] = state;
  ++job.counts[static_cast<size_t>(state)];
  ++task_totals_[static_cast<size_t>(state)];
}

void Scheduler::make_ready(Job& job, TaskIndex task) {
  set_state(job, task, TaskState::kQueued);
  if (task < job.cursor) job.ready.push_back(task);
}

void Scheduler::persist_task(Job& job, TaskIndex task, LeaseToken lease,
                             const std::string& worker) {
  job.touched_end = std::max<uint64_t>(job.touched_end, uint64_t{task} + 1);
  TaskChange change;
  change.job = job.id;
  change.task = task;
  change.state = reported(job.state[task]);
  change.attempts = total_attempts(job, task);
  if (auto it = job.budget_base.find(task); it != job.budget_base.end()) {
    change.budget_base = it->second;
  }
  change.lease = lease;
  change.worker = worker;
  if (auto it = job.errors.find(task); it != job.errors.end()) change.error = it->second;
  outbox_.tasks.push_back(std::move(change));
}

void Scheduler::record_error(Job& job, TaskIndex task, const std::string& error) {
  job.errors[task] = error;
  auto it = std::find(job.last_errors.begin(), job.last_errors.end(), task);
  if (it != job.last_errors.end()) job.last_errors.erase(it);
  job.last_errors.push_front(task);
  if (job.last_errors.size() > kLastErrorsKept) job.last_errors.pop_back();
}

void Scheduler::release_lease(const TaskKey& key) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  if (auto w = workers_.find(it->second.worker); w != workers_.end()) {
    detach(w->second, key, it->second);
  }
  Project& project = projects_[it->second.project];
  if (project.running > 0) --project.running;
  if (!project.named && others_running_ > 0) --others_running_;
  if (Pool& pool = pools_[it->second.pool]; pool.running > 0) --pool.running;
  const std::vector<uint32_t> held = std::move(it->second.limits_held);
  leases_.erase(it);
  // The jobs parked on a limit become candidates again as soon as it has a free
  // token (pick_job looks at them where they are).
  for (uint32_t id : held) {
    if (limits_[id].in_use > 0) --limits_[id].in_use;
  }
}

void Scheduler::finish_task(Job& job, TaskIndex task, TaskState state, const std::string& error,
                            Millis now) {
  if (!error.empty()) record_error(job, task, error);
  set_state(job, task, state);
  persist_task(job, task);
  on_task_terminal(job, task, now);
  update_job_state(job);
  refresh_runnable(job);
}

void Scheduler::fail_attempt(Job& job, TaskIndex task, const std::string& error,
                             const std::string& worker, Millis now) {
  count_failure(job, worker, error);
  uint32_t attempts = job.attempts[task];
  uint32_t attempt = total_attempts(job, task);
  if (attempts >= job.max_attempts()) {
    outbox_.notices.push_back({Notice::Kind::kTaskDead, job.id, task, attempt, {}, error, {}});
    finish_task(job, task, TaskState::kDead, error, now);
    return;
  }
  outbox_.notices.push_back({Notice::Kind::kTaskFailed, job.id, task, attempt, {}, error, {}});
  record_error(job, task, error);
  set_state(job, task, TaskState::kBackoff);
  persist_task(job, task);
  uint64_t generation = ++job.backoff_timers_armed;
  job.backoff_generation[task] = generation;
  backoff_timers_.push({now + backoff_delay(attempts), {job.id, task}, generation});
  update_job_state(job);
  refresh_runnable(job);
}

void Scheduler::requeue_without_penalty(Job& job, TaskIndex task) {
  if (job.attempts[task] > 0) --job.attempts[task];
  make_ready(job, task);
  persist_task(job, task);
  update_job_state(job);
  refresh_runnable(job);
}

void Scheduler::adapt_chunks(Job& job, uint64_t frames, Millis took) {
  if (job.spec.chunk_target_s == 0 || frames == 0 || job.cancelled) return;
  // Whose tasks stand for frames of another job cannot be cut again.
  if (job.spec.after_frames != 0 || !job.frame_dependants.empty()) return;
  job.sampled_frames += frames;
  job.sampled_ms += std::max<int64_t>(took.count(), 1);
  const double per_frame_ms =
      static_cast<double>(job.sampled_ms) / static_cast<double>(job.sampled_frames);
  const double ideal = 1000.0 * job.spec.chunk_target_s / per_frame_ms;
  uint64_t want = static_cast<uint64_t>(
      std::clamp(std::llround(ideal), 1LL, static_cast<long long>(common::FrameSet::kMaxFrames)));
  const uint64_t now_size = job.spec.chunk_now != 0 ? job.spec.chunk_now : job.spec.chunk;
  // Within a quarter of the size the tail was cut to: not worth the change.
  if (want * 4 < now_size * 5 && now_size * 4 < want * 5) return;
  const uint64_t from_task = std::max<uint64_t>(job.touched_end, job.cursor);
  if (from_task >= job.task_count) return;
  const uint64_t from = job.span(static_cast<TaskIndex>(from_task)).first;
  const uint64_t left = job.spec.frames.size() - from;
  // Never more tasks than a job may have.
  const uint64_t room = kMaxTasksPerJob - from_task;
  want = std::max(want, (left + room - 1) / room);

  // The runs that cover the tasks before the tail, then the tail cut anew.
  std::vector<ChunkRun> runs;
  if (job.spec.chunk_runs.empty()) {
    push_run(runs, from_task, job.spec.chunk);
  } else {
    uint64_t tasks = 0;
    for (const ChunkRun& run : job.spec.chunk_runs) {
      if (tasks >= from_task) break;
      push_run(runs, std::min(run.tasks, from_task - tasks), run.frames);
      tasks += run.tasks;
    }
  }
  append_chunk_runs(job.spec.frames.slice(from, left), 0, want, job.spec.chunk_max_gap, runs);
  if (runs == job.spec.chunk_runs) return;
  job.spec.chunk_runs = std::move(runs);
  job.spec.chunk_now = static_cast<uint32_t>(std::min<uint64_t>(want, UINT32_MAX));
  // Whether a step's frames were contiguous counts from the whole set: the
  // slice keeps the frames, so the cut is the same as over the full set.
  const TaskState tail = job.state[from_task];
  for (uint64_t t = from_task; t < job.task_count; ++t) {
    --job.counts[static_cast<size_t>(tail)];
    --task_totals_[static_cast<size_t>(tail)];
  }
  const uint64_t count = job.index_runs();
  job.state.resize(from_task);
  job.attempts.resize(from_task);
  job.state.resize(count, tail);
  job.attempts.resize(count, 0);
  job.counts[static_cast<size_t>(tail)] += count - from_task;
  task_totals_[static_cast<size_t>(tail)] += count - from_task;
  job.task_count = count;
  outbox_.specs.push_back(job.id);
  update_job_state(job);
  refresh_runnable(job);
}

Millis Scheduler::backoff_delay(uint32_t attempts) {
  // Exponential from the base, capped, then "equal jitter": half fixed, half random,
  // so a burst of failures does not come back as a burst.
  int shift = static_cast<int>(std::min<uint32_t>(attempts > 0 ? attempts - 1 : 0, 30));
  int64_t base = options_.backoff_base.count();
  int64_t delay = std::min<int64_t>(options_.backoff_max.count(), base > 0 ? (base << shift) : 0);
  if (delay <= 1) return Millis(delay);
  std::uniform_int_distribution<int64_t> jitter(0, delay / 2);
  return Millis(delay - delay / 2 + jitter(rng_));
}

void Scheduler::on_task_terminal(Job& job, TaskIndex task, Millis now) {
  TaskState s = job.state[task];
  if (s == TaskState::kSucceeded) {
    auto [first, last] = job.span(task);
    for (JobId down_id : job.frame_dependants) {
      Job* down = find_job(down_id);
      if (!down || down->unmet.empty()) continue;
      std::vector<TaskIndex> downs;
      for (uint64_t i = first; i < last; ++i) {
        if (auto d = down->task_of(job.spec.frames.frame_at(i))) downs.push_back(*d);
      }
      std::sort(downs.begin(), downs.end());
      downs.erase(std::unique(downs.begin(), downs.end()), downs.end());
      bool changed = false;
      for (TaskIndex d : downs) {
        if (down->unmet[d] > 0) --down->unmet[d];
        if (down->unmet[d] == 0 && down->state[d] == TaskState::kWaiting &&
            down->after_unmet == 0) {
          make_ready(*down, d);
          changed = true;
        }
      }
      if (changed) {
        update_job_state(*down);
        refresh_runnable(*down);
      }
    }
    return;
  }
  if (!is_broken(s)) return;
  std::string reason = s == TaskState::kCancelled ? fmt::format("upstream job {} cancelled", job.id)
                                                  : fmt::format("upstream job {} frame {} failed",
                                                                job.id, job.first_frame(task));
  fail_waiting_dependants(job, task, reason, now);
}

void Scheduler::fail_waiting_dependants(Job& up, TaskIndex task, const std::string& reason,
                                        Millis now) {
  auto [first, last] = up.span(task);
  for (JobId down_id : up.frame_dependants) {
    Job* down = find_job(down_id);
    if (!down || down->unmet.empty()) continue;
    // Name the frame the dependant actually needed.
    std::vector<std::pair<TaskIndex, int64_t>> downs;
    for (uint64_t i = first; i < last; ++i) {
      int64_t f = up.spec.frames.frame_at(i);
      if (auto d = down->task_of(f)) downs.emplace_back(*d, f);
    }
    std::sort(downs.begin(), downs.end());
    TaskIndex previous = std::numeric_limits<TaskIndex>::max();
    for (auto [d, f] : downs) {
      if (d == previous) continue;
      previous = d;
      if (down->state[d] != TaskState::kWaiting) continue;
      std::string why = up.state[task] == TaskState::kCancelled
                            ? reason
                            : fmt::format("upstream job {} frame {} failed", up.id, f);
      finish_task(*down, d, TaskState::kFailed, why, now);
    }
  }
  for (JobId down_id : up.after_dependants) {
    Job* down = find_job(down_id);
    if (!down || !down->after_broken.empty()) continue;
    down->after_broken = reason;
    for (TaskIndex d = 0; d < down->task_count; ++d) {
      if (down->state[d] != TaskState::kWaiting) continue;
      record_error(*down, d, reason);
      set_state(*down, d, TaskState::kFailed);
      persist_task(*down, d);
      on_task_terminal(*down, d, now);
    }
    update_job_state(*down);
    refresh_runnable(*down);
  }
}

void Scheduler::update_job_state(Job& job) {
  JobState next;
  uint64_t terminal = job.terminal();
  if (job.cancelled) {
    next = JobState::kCancelled;
  } else if (terminal == job.task_count) {
    next = job.broken() > 0 ? JobState::kFailed : JobState::kSucceeded;
  } else if (job.paused) {
    next = JobState::kPaused;
  } else if (job.count(TaskState::kRunning) > 0 || terminal > 0 ||
             job.count(TaskState::kBackoff) > 0) {
    next = JobState::kRunning;
  } else {
    next = JobState::kQueued;
  }
  if (next == job.job_state) return;
  set_job_state(job, next);
  bool finished =
      next == JobState::kSucceeded || next == JobState::kFailed || next == JobState::kCancelled;
  if (!finished) return;
  Notice notice{Notice::Kind::kJobFinished, job.id, 0, 0, {}, {}, next};
  outbox_.notices.push_back(notice);
  if (next != JobState::kSucceeded) return;
  for (JobId down_id : job.after_dependants) {
    Job* down = find_job(down_id);
    if (!down || down->after_unmet == 0) continue;
    if (--down->after_unmet > 0 || !down->after_broken.empty()) continue;
    for (TaskIndex d = 0; d < down->task_count; ++d) {
      if (down->state[d] == TaskState::kWaiting && (down->unmet.empty() || down->unmet[d] == 0)) {
        make_ready(*down, d);
      }
    }
    update_job_state(*down);
    refresh_runnable(*down);
  }
}

void Scheduler::PoolQueues::insert(const Job& job, const QueueKey& key) {
  JobQueue& queue = by_pool[job.queued_pool][job.queued_group];
  Job* mutable_job = const_cast<Job*>(&job);
  if (!queue.all.emplace(key, mutable_job).second) return;
  if (job.spec.interactive) queue.interactive.emplace(key, mutable_job);
  if (job.queued_cores > 0) queue.cores.insert(job.queued_cores);
  if (job.queued_memory > 0) queue.memory.insert(job.queued_memory);
  ++size;
}

void Scheduler::PoolQueues::erase(const Job& job) {
  auto pool = by_pool.find(job.queued_pool);
  if (pool == by_pool.end()) return;
  auto group = pool->second.find(job.queued_group);
  if (group == pool->second.end()) return;
  JobQueue& queue = group->second;
  if (queue.all.erase(*job.queued_key) == 0) return;
  queue.interactive.erase(*job.queued_key);
  if (job.queued_cores > 0) queue.cores.erase(queue.cores.find(job.queued_cores));
  if (job.queued_memory > 0) queue.memory.erase(queue.memory.find(job.queued_memory));
  --size;
  // An emptied pool or group keeps its (empty) queue: pick_job may be walking it.
}

void Scheduler::dequeue(Job& job) {
  if (!job.queued_key) return;
  PoolQueues& queues = job.parked_on ? limits_[*job.parked_on].waiting : runnable_;
  queues.erase(job);
  job.queued_key.reset();
  job.parked_on.reset();
}

void Scheduler::refresh_runnable(Job& job) {
  bool runnable =
      job.durable && !job.paused && !job.cancelled && job.count(TaskState::kQueued) > 0 &&
      (job.spec.max_running == 0 || job.count(TaskState::kRunning) < job.spec.max_running);
  std::optional<QueueKey> key;
  if (runnable) {
    key = std::make_tuple(-int64_t{job.spec.priority}, job.count(TaskState::kRunning), job.id);
  }
  // A job waiting for a full limit is parked on it, out of the run queue:
  // dispatch looks at it only while that limit has a free token.
  std::optional<uint32_t> park = key ? full_limit(job) : std::nullopt;
  if (key == job.queued_key && park == job.parked_on &&
      (!key || (job.queued_pool == job.spec.pool && job.queued_group == share_group(job) &&
                job.queued_cores == job.spec.cores && job.queued_memory == job.spec.memory))) {
    return;
  }
  dequeue(job);
  if (!key) return;
  job.queued_key = key;
  job.queued_pool = job.spec.pool;
  job.queued_group = share_group(job);
  job.queued_cores = job.spec.cores;
  job.queued_memory = job.spec.memory;
  job.parked_on = park;
  PoolQueues& queues = park ? limits_[*park].waiting : runnable_;
  queues.insert(job, *key);
}

bool Scheduler::dispatchable() const {
  return !runnable_.empty() || std::any_of(limits_.begin(), limits_.end(), [](const Limit& limit) {
    return limit.open() && !limit.waiting.empty();
  });
}

std::optional<TaskIndex> Scheduler::pop_ready(Job& job) {
  while (!job.ready.empty()) {
    TaskIndex t = job.ready.front();
    job.ready.pop_front();
    if (job.state[t] == TaskState::kQueued) return t;
  }
  while (job.cursor < job.task_count) {
    auto t = static_cast<TaskIndex>(job.cursor++);
    if (job.state[t] == TaskState::kQueued) return t;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ workers

bool Scheduler::pool_served(const std::string& pool) const {
  return std::any_of(workers_.begin(), workers_.end(), [&](const auto& entry) {
    return entry.second.alive && entry.second.serves(pool);
  });
}

bool Scheduler::ranks_before(const QueueKey& a, uint32_t group_a, const QueueKey& b,
                             uint32_t group_b) const {
  if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);  // priority
  if (group_a != group_b) {
    // Fewer running tasks for its weight first: a/wa < b/wb. Group 0 is the
    // default share: every project not named, weight 1.
    auto running = [&](uint32_t group) {
      return group == 0 ? others_running_ : projects_[group].running;
    };
    auto weight = [&](uint32_t group) { return group == 0 ? 1u : projects_[group].weight; };
    uint64_t lhs = running(group_a) * weight(group_b);
    uint64_t rhs = running(group_b) * weight(group_a);
    if (lhs != rhs) return lhs < rhs;
  }
  return a < b;
}

Scheduler::Job* Scheduler::pick_job(const Worker& worker, bool interactive_only) {
  Job* best = nullptr;
  QueueKey best_key{};
  uint32_t best_group = 0;
  const uint32_t free_cores = worker.free_cores();
  const uint64_t free_memory = worker.free_memory();
  const uint32_t free_gpus = worker.free_gpus();
  // The best job of one queue that the worker may take, if better than `best`.
  auto consider_group = [&](uint32_t group, const JobQueue& lanes) {
    const auto& queue = interactive_only ? lanes.interactive : lanes.all;
    if (queue.empty()) return;
    if (lanes.least_cores() > free_cores || lanes.least_memory() > free_memory) return;
    for (auto it = queue.begin(); it != queue.end();) {
      if (best && !ranks_before(it->first, group, best_key, best_group)) return;
      auto [key, job] = *it;
      ++it;
      if (job->blocked_count > 0 && blocked_for(*job, worker.spec.name)) continue;
      if (!job->spec.tag_choices.empty() && !worker.has_tags(job->spec.tag_choices)) continue;
      if (job->spec.cores > free_cores || job->spec.memory > free_memory ||
          job->spec.gpus > free_gpus) {
        continue;
      }
      // A limit of its that filled since the job was queued: park it there now
      // (never in this queue: this one is runnable_ or an open limit's, so `it`,
      // already past the job, stays valid).
      if (full_limit(*job)) {
        refresh_runnable(*job);
        continue;
      }
      best = job;
      best_key = key;
      best_group = group;
      return;
    }
  };
  auto consider = [&](const PoolQueues& queues, const std::string& pool) {
    auto found = queues.by_pool.find(pool);
    if (found == queues.by_pool.end()) return;
    for (const auto& [group, lanes] : found->second) consider_group(group, lanes);
  };
  auto consider_pool = [&](const std::string& pool) {
    consider(runnable_, pool);
    // Limits are few (licences): looking at each open one costs little.
    for (const Limit& limit : limits_) {
      if (limit.open() && !limit.waiting.empty()) consider(limit.waiting, pool);
    }
  };
  consider_pool({});
  for (const std::string& tag : worker.spec.tags) {
    if (!tag.empty()) consider_pool(tag);
  }
  return best;
}

LeaseToken Scheduler::new_token() {
  LeaseToken token = 0;
  while (token == 0) token = rng_();
  return token;
}

void Scheduler::arm_lease_timer(const TaskKey& key, const Lease& lease) {
  Millis at = lease.expires;
  if (const Job* job = find_job(key.job); job && job->spec.timeout.count() > 0) {
    at = std::min(at, lease.started + Millis(job->spec.timeout) + options_.timeout_grace);
  }
  lease_timers_.push({at, key, lease.token});
}

std::vector<Dispatch> Scheduler::dispatch(Millis now, size_t max) {
  std::vector<Dispatch> out;
  if (now < hold_until_ || !dispatchable()) return out;
  for (auto& [worker_id, worker] : workers_) {
    if (out.size() >= max) break;
    if (!worker.alive) continue;
    if (!controls_.empty() && controls_.count(worker.spec.name)) continue;  // disabled, draining
    // Reserved slots first, so interactive work leaves the general slots to batch work.
    for (bool reserved : {true, false}) {
      while (out.size() < max) {
        const uint32_t reserved_used = worker.interactive_used;
        auto general_used = static_cast<uint32_t>(worker.running.size()) - reserved_used;
        if (reserved ? reserved_used >= worker.spec.interactive_slots
                     : general_used >= worker.spec.slots) {
          break;
        }
        Job* job = pick_job(worker, reserved);
        if (!job) break;
        auto task = pop_ready(*job);
        FARMHAND_CHECK(task.has_value());
        TaskIndex t = *task;
        if (job->attempts[t] < 255) ++job->attempts[t];
        Lease lease;
        lease.worker = worker_id;
        lease.worker_name = worker.spec.name;
        lease.token = new_token();
        lease.attempt = total_attempts(*job, t);
        lease.started = now;
        lease.expires = now + options_.lease_ttl;
        lease.interactive_slot = reserved;
        TaskKey key{job->id, t};
        set_state(*job, t, TaskState::kRunning);
        arm_lease_timer(key, lease);
        const uint32_t attempt = lease.attempt;
        const LeaseToken token = lease.token;
        add_lease(key, std::move(lease));
        persist_task(*job, t, token, worker.spec.name);
        update_job_state(*job);
        refresh_runnable(*job);
        out.push_back({worker_id, job->id, t, token, attempt});
      }
    }
    if (!dispatchable()) break;
  }
  return out;
}

void Scheduler::drop_worker_session(Worker& worker, const std::vector<TaskRef>& still_running,
                                    WorkerId successor, Millis now) {
  std::vector<TaskKey> keys(worker.running.begin(), worker.running.end());
  for (const TaskKey& key : keys) {
    auto it = leases_.find(key);
    if (it == leases_.end()) continue;
    bool kept = std::any_of(still_running.begin(), still_running.end(), [&](const TaskRef& r) {
      return r.job == key.job && r.task == key.task && r.lease == it->second.token;
    });
    if (kept && successor != 0) continue;  // worker_ready moves it to the new session
    std::string name = it->second.worker_name;
    release_lease(key);
    if (Job* job = find_job(key.job)) {
      fail_attempt(*job, key.task, fmt::format("worker {} restarted and lost the task", name), name,
                   now);
    }
  }
}

std::string Scheduler::free_name(const std::string& taken) const {
  for (uint64_t n = 2;; ++n) {
    std::string name = fmt::format("{}-{}", taken, n);
    if (!sessions_by_name_.count(name)) return name;
  }
}

void Scheduler::index_session(WorkerId id, const WorkerSpec& spec) {
  sessions_by_name_[spec.name].push_back(id);
  if (!spec.instance.empty()) sessions_by_instance_[spec.instance].push_back(id);
}

void Scheduler::unindex_session(WorkerId id, const WorkerSpec& spec) {
  auto unlist = [id](auto& index, const std::string& key) {
    auto it = index.find(key);
    if (it == index.end()) return;
    std::erase(it->second, id);
    if (it->second.empty()) index.erase(it);
  };
  unlist(sessions_by_name_, spec.name);
  if (!spec.instance.empty()) unlist(sessions_by_instance_, spec.instance);
}

std::vector<WorkerId> Scheduler::sessions_named(const std::string& name) const {
  auto it = sessions_by_name_.find(name);
  if (it == sessions_by_name_.end()) return {};
  std::vector<WorkerId> ids = it->second;
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<WorkerId> Scheduler::sessions_of_instance(const std::string& instance) const {
  auto it = sessions_by_instance_.find(instance);
  if (it == sessions_by_instance_.end()) return {};
  std::vector<WorkerId> ids = it->second;
  std::sort(ids.begin(), ids.end());
  return ids;
}

bool Scheduler::holds_any(WorkerId worker, const std::vector<TaskRef>& refs) const {
  return std::any_of(refs.begin(), refs.end(), [&](const TaskRef& r) {
    auto it = leases_.find({r.job, r.task});
    return it != leases_.end() && it->second.worker == worker && it->second.token == r.lease;
  });
}

namespace {

// The start of an instance id: enough to tell two processes apart in a message.
std::string short_instance(const std::string& instance) {
  constexpr size_t kShown = 8;
  return instance.size() > kShown ? instance.substr(0, kShown) + "…" : instance;
}

}  // namespace

WorkerReadyVerdict Scheduler::worker_ready(WorkerId id, WorkerSpec spec,
                                           const std::vector<TaskRef>& running, Millis now) {
  // The sessions this one replaces: the same process's earlier connection, found by
  // its instance even under a name given to it (a renamed duplicate), or whoever
  // holds the name and may give it up.
  std::vector<WorkerId> previous;
  if (!spec.instance.empty()) {
    for (WorkerId other_id : sessions_of_instance(spec.instance)) {
      if (other_id != id) {
        previous.push_back(other_id);
        spec.name = workers_.at(other_id).spec.name;
      }
    }
  }
  if (previous.empty()) {
    for (WorkerId other_id : sessions_named(spec.name)) {
      if (other_id == id) continue;
      const Worker& other = workers_.at(other_id);
      // Without instances on both sides a known name is the same worker restarted
      // (workers that predate instances); else another process, which may take the
      // name over from a session whose liveness ran out, or when it reports a lease
      // of that session: only the worker it was dispatched to knows the token, so
      // this is that worker restarted before its old session was found silent.
      if (spec.instance.empty() || other.spec.instance.empty() || !other.alive ||
          holds_any(other_id, running)) {
        previous.push_back(other_id);
      } else if (options_.rename_duplicates) {
        spec.name = free_name(spec.name);
      } else {
        return {false,
                spec.name,
                fmt::format("worker name \"{}\" is in use by a live worker (host {}, instance {})",
                            spec.name, other.spec.host.empty() ? "unknown" : other.spec.host,
                            short_instance(other.spec.instance)),
                {}};
      }
      break;
    }
  }
  for (WorkerId old : previous) {
    Worker& gone = workers_.at(old);
    drop_worker_session(gone, running, id, now);
    // The old session died with its connection: left here it would still look alive
    // and take new work beyond the worker's slots. The shell forgets the sessions
    // the verdict lists as replaced.
    unindex_session(old, gone.spec);
    workers_.erase(old);
  }
  // Leases restored from the store under this name that it no longer runs died
  // while the broker was down — most often with the broker itself, which takes
  // its local workers along. The broker's crash must not burn the task's
  // attempts, so these go back to the queue without penalty. (Those it runs are
  // claimed below: none of this name is left unclaimed.)
  std::vector<TaskKey> lost;
  if (auto unclaimed = unclaimed_leases_.find(spec.name); unclaimed != unclaimed_leases_.end()) {
    std::vector<TaskKey> keys = std::move(unclaimed->second);
    unclaimed_leases_.erase(unclaimed);
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    for (const TaskKey& key : keys) {
      auto it = leases_.find(key);
      if (it == leases_.end()) continue;
      const Lease& lease = it->second;
      if (lease.worker != 0 || lease.worker_name != spec.name) continue;
      bool kept = std::any_of(running.begin(), running.end(), [&](const TaskRef& r) {
        return r.job == key.job && r.task == key.task && r.lease == lease.token;
      });
      if (!kept) lost.push_back(key);
    }
  }
  for (const TaskKey& key : lost) {
    release_lease(key);
    if (Job* job = find_job(key.job)) requeue_without_penalty(*job, key.task);
  }

  auto [entry, added] = workers_.try_emplace(id);
  Worker& worker = entry->second;
  bool joined = worker.spec.name.empty();
  if (!added) unindex_session(id, worker.spec);
  worker.spec = std::move(spec);
  index_session(id, worker.spec);
  if (worker.spec.slots == 0) worker.spec.slots = 1;
  worker.alive = true;
  worker.last_seen = now;
  if (const Millis silent_at =
          now + options_.heartbeat_interval * options_.heartbeat_liveness + Millis(1);
      !next_worker_sweep_ || silent_at < *next_worker_sweep_) {
    next_worker_sweep_ = silent_at;
  }
  if (joined) {
    outbox_.notices.push_back(
        {Notice::Kind::kWorkerJoined, 0, 0, 0, worker.spec.name, {}, JobState::kQueued});
  }

  // Leases it holds first, so that adopting a task below sees what it really runs.
  std::vector<const TaskRef*> unleased;
  for (const TaskRef& ref : running) {
    TaskKey key{ref.job, ref.task};
    auto it = leases_.find(key);
    if (it != leases_.end() && it->second.token == ref.lease) {
      Lease& lease = it->second;
      if (lease.worker != id) {
        if (auto w = workers_.find(lease.worker); w != workers_.end()) {
          detach(w->second, key, lease);
        }
        lease.worker = id;
        lease.worker_name = worker.spec.name;
        attach(worker, key, lease);
      }
      lease.expires = now + options_.lease_ttl;
      continue;
    }
    unleased.push_back(&ref);
  }
  for (const TaskRef* ref_ptr : unleased) {
    const TaskRef& ref = *ref_ptr;
    TaskKey key{ref.job, ref.task};
    Job* job = find_job(ref.job);
    // (Not when one of its limits is full or the job is at its max_running:
    // the room it had went to another task when it was requeued, and neither
    // is ever exceeded. Nor when the worker has no room left for it: its slot,
    // cores or memory went to another task meanwhile.)
    if (!leases_.count(key) && job && ref.task < job->task_count &&
        (job->state[ref.task] == TaskState::kQueued ||
         job->state[ref.task] == TaskState::kBackoff) &&
        !job->killed(ref.task, ref.lease) && !full_limit(*job) &&
        (job->spec.max_running == 0 || job->count(TaskState::kRunning) < job->spec.max_running) &&
        worker.running.size() <
            worker.spec.slots + (job->spec.interactive ? worker.spec.interactive_slots : 0) &&
        job->spec.cores <= worker.free_cores() && job->spec.memory <= worker.free_memory() &&
        job->spec.gpus <= worker.free_gpus()) {
      // Dispatched before a broker crash but never committed, or requeued after a
      // partition: the worker is still on it, so let it finish rather than rerun it.
      if (job->attempts[ref.task] == 0) job->attempts[ref.task] = 1;
      Lease lease;
      lease.worker = id;
      lease.worker_name = worker.spec.name;
      lease.token = ref.lease;
      lease.attempt = total_attempts(*job, ref.task);
      lease.started = now;
      lease.expires = now + options_.lease_ttl;
      set_state(*job, ref.task, TaskState::kRunning);
      arm_lease_timer(key, lease);
      add_lease(key, lease);
      persist_task(*job, ref.task, lease.token, worker.spec.name);
      update_job_state(*job);
      refresh_runnable(*job);
      continue;
    }
    outbox_.cancels.push_back({id, ref, "task is no longer leased to this worker"});
  }
  // Kept interactive tasks go back into the reserved slots, so they do not hold general ones.
  for (const TaskKey& key : worker.running) {
    if (worker.interactive_used >= worker.spec.interactive_slots) break;
    auto it = leases_.find(key);
    const Job* job = find_job(key.job);
    if (it == leases_.end() || !job || !job->spec.interactive || it->second.interactive_slot) {
      continue;
    }
    it->second.interactive_slot = true;
    ++worker.interactive_used;
  }
  return {true, worker.spec.name, {}, std::move(previous)};
}

void Scheduler::worker_seen(WorkerId id, Millis now) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  it->second.last_seen = now;
  if (!it->second.alive) {
    it->second.alive = true;
    Notice notice{Notice::Kind::kWorkerJoined, 0, 0, 0, it->second.spec.name, {}, {}};
    notice.again = true;
    outbox_.notices.push_back(std::move(notice));
  }
}

void Scheduler::worker_gone(WorkerId id, Millis now) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  std::vector<TaskKey> keys(it->second.running.begin(), it->second.running.end());
  for (const TaskKey& key : keys) {
    release_lease(key);
    if (Job* job = find_job(key.job); job && job->state[key.task] == TaskState::kRunning) {
      requeue_without_penalty(*job, key.task);
    }
  }
  outbox_.notices.push_back({Notice::Kind::kWorkerLost,
                             0,
                             0,
                             0,
                             it->second.spec.name,
                             {},
                             {},
                             WorkerLostCause::kDisconnected});
  unindex_session(it->first, it->second.spec);
  workers_.erase(it);
  (void)now;
}

bool Scheduler::renew_lease(WorkerId worker, const TaskRef& ref, Millis now) {
  auto it = leases_.find({ref.job, ref.task});
  if (it == leases_.end() || it->second.token != ref.lease) return false;
  if (it->second.worker != worker) return false;
  it->second.expires = now + options_.lease_ttl;
  return true;
}

bool Scheduler::holds_lease(WorkerId worker, const TaskRef& ref) const {
  auto it = leases_.find({ref.job, ref.task});
  return it != leases_.end() && it->second.token == ref.lease && it->second.worker == worker;
}

ResultVerdict Scheduler::task_result(WorkerId worker, const TaskRef& ref, bool succeeded,
                                     const Error& error, Millis now, const TaskOutcome& outcome) {
  Job* job = find_job(ref.job);
  if (!job || ref.task >= job->task_count) return ResultVerdict::kStale;
  TaskKey key{ref.job, static_cast<TaskIndex>(ref.task)};
  auto it = leases_.find(key);
  if (it != leases_.end() && it->second.token == ref.lease) {
    const std::string worker_name = it->second.worker_name;
    const Millis started = it->second.started;
    release_lease(key);
    if (succeeded) {
      finish_task(*job, key.task, TaskState::kSucceeded, {}, now);
      auto [first, last] = job->span(key.task);
      adapt_chunks(*job, last - first, now - started);
    } else {
      if (outcome.out_of_memory) grow_memory_request(*job, outcome);
      fail_attempt(*job, key.task, error.reason.empty() ? "failed" : error.reason, worker_name,
                   now);
    }
    return ResultVerdict::kAccepted;
  }
  // A late success from an attempt whose lease lapsed (or that a broker crash
  // forgot) still counts while no newer attempt runs: the work is done.
  TaskState s = job->state[key.task];
  if (it == leases_.end() && succeeded && (s == TaskState::kQueued || s == TaskState::kBackoff) &&
      !job->killed(key.task, ref.lease)) {
    finish_task(*job, key.task, TaskState::kSucceeded, {}, now);
    return ResultVerdict::kAccepted;
  }
  (void)worker;
  return ResultVerdict::kStale;
}

void Scheduler::tick(Millis now) {
  if (next_worker_sweep_ && now >= *next_worker_sweep_) sweep_workers(now);

  while (!lease_timers_.empty() && lease_timers_.top().at <= now) {
    Timer timer = lease_timers_.top();
    lease_timers_.pop();
    auto it = leases_.find(timer.key);
    if (it == leases_.end() || it->second.token != timer.generation) continue;
    Lease& lease = it->second;
    Job* job = find_job(timer.key.job);
    if (!job) {
      release_lease(timer.key);
      continue;
    }
    bool timed_out = job->spec.timeout.count() > 0 &&
                     now >= lease.started + Millis(job->spec.timeout) + options_.timeout_grace;
    if (!timed_out && now < lease.expires) {
      arm_lease_timer(timer.key, lease);  // renewed since this timer was set
      continue;
    }
    std::string reason;
    if (timed_out) {
      reason = fmt::format("timed out after {} s", job->spec.timeout.count());
      if (lease.worker != 0) {
        outbox_.cancels.push_back(
            {lease.worker, {timer.key.job, timer.key.task, lease.token}, reason});
      }
    } else {
      reason = fmt::format("lease expired on worker {}", lease.worker_name);
      outbox_.notices.push_back({Notice::Kind::kLeaseExpired,
                                 job->id,
                                 timer.key.task,
                                 lease.attempt,
                                 lease.worker_name,
                                 reason,
                                 {}});
    }
    const std::string worker_name = lease.worker_name;
    release_lease(timer.key);
    fail_attempt(*job, timer.key.task, reason, worker_name, now);
  }

  while (!backoff_timers_.empty() && backoff_timers_.top().at <= now) {
    Timer timer = backoff_timers_.top();
    backoff_timers_.pop();
    Job* job = find_job(timer.key.job);
    if (!job) continue;
    TaskIndex t = timer.key.task;
    auto live = job->backoff_generation.find(t);
    if (live == job->backoff_generation.end() || live->second != timer.generation) continue;
    job->backoff_generation.erase(live);
    if (job->state[t] != TaskState::kBackoff) continue;
    make_ready(*job, t);
    update_job_state(*job);
    refresh_runnable(*job);
  }
}

void Scheduler::sweep_workers(Millis now) {
  const Millis silent_after = options_.heartbeat_interval * options_.heartbeat_liveness;
  const Millis forget_after = silent_after * kForgetLostWorkerPeriods;
  next_worker_sweep_.reset();
  for (auto it = workers_.begin(); it != workers_.end();) {
    Worker& w = it->second;
    if (w.alive && now - w.last_seen > silent_after) {
      // A silent worker gets no new work at once; its leases run out on their own.
      w.alive = false;
      outbox_.notices.push_back(
          {Notice::Kind::kWorkerLost, 0, 0, 0, w.spec.name, {}, {}, WorkerLostCause::kSilent});
    }
    if (!w.alive && w.running.empty() && now - w.last_seen > forget_after) {
      unindex_session(it->first, w.spec);
      it = workers_.erase(it);
      continue;
    }
    // Early is harmless (one more walk); late would leave a silent worker its tasks.
    // A lost worker still holding leases is forgotten once they end: looked at again later.
    const Millis due = std::max(w.last_seen + (w.alive ? silent_after : forget_after) + Millis(1),
                                now + (w.alive ? Millis(1) : silent_after));
    if (!next_worker_sweep_ || due < *next_worker_sweep_) next_worker_sweep_ = due;
    ++it;
  }
}

std::optional<Millis> Scheduler::next_deadline() const {
  std::optional<Millis> next;
  auto consider = [&next](Millis at) {
    if (!next || at < *next) next = at;
  };
  if (!lease_timers_.empty()) consider(lease_timers_.top().at);
  if (!backoff_timers_.empty()) consider(backoff_timers_.top().at);
  if (next_worker_sweep_) consider(*next_worker_sweep_);
  if (hold_until_.count() > 0 && dispatchable()) consider(hold_until_);
  return next;
}

Outbox Scheduler::take_outbox() {
  Outbox out = std::move(outbox_);
  outbox_ = Outbox{};
  return out;
}

// ------------------------------------------------------------------ queries

std::optional<JobView> Scheduler::job(JobId id) const {
  const Job* job = find_job(id);
  if (!job) return std::nullopt;
  JobView view;
  view.id = id;
  view.state = job->job_state;
  view.task_count = job->task_count;
  view.frames_succeeded = job->frames_succeeded;
  view.counts = job->counts;
  view.counts[static_cast<size_t>(TaskState::kQueued)] += job->count(TaskState::kBackoff);
  view.counts[static_cast<size_t>(TaskState::kBackoff)] = 0;
  view.paused = job->paused;
  view.cancelled = job->cancelled;
  return view;
}

std::vector<JobId> Scheduler::job_ids() const {
  std::vector<JobId> ids;
  ids.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_) ids.push_back(id);
  return ids;
}

std::optional<JobId> Scheduler::last_job_id() const {
  if (jobs_.empty()) return std::nullopt;
  return jobs_.rbegin()->first;
}

const JobSpec* Scheduler::job_spec(JobId id) const {
  const Job* job = find_job(id);
  return job ? &job->spec : nullptr;
}

std::vector<RunningTask> Scheduler::running_tasks(JobId id, size_t limit) const {
  std::vector<RunningTask> out;
  for (auto it = leases_.lower_bound({id, 0}); it != leases_.end() && it->first.job == id; ++it) {
    if (out.size() >= limit) break;
    out.push_back(
        {id, it->first.task, it->second.attempt, it->second.worker_name, it->second.started});
  }
  return out;
}

std::vector<TaskView> Scheduler::last_errors(JobId id) const {
  std::vector<TaskView> out;
  const Job* job = find_job(id);
  if (!job) return out;
  for (TaskIndex t : job->last_errors) {
    auto it = job->errors.find(t);
    out.push_back({t, reported(job->state[t]), total_attempts(*job, t),
                   it == job->errors.end() ? std::string() : it->second});
  }
  return out;
}

std::vector<TaskView> Scheduler::tasks(JobId id, uint64_t offset, uint32_t limit,
                                       std::optional<TaskState> filter) const {
  std::vector<TaskView> out;
  const Job* job = find_job(id);
  if (!job) return out;
  uint64_t skipped = 0;
  for (uint64_t t = filter ? 0 : offset; t < job->task_count && out.size() < limit; ++t) {
    TaskState s = reported(job->state[t]);
    if (filter) {
      if (s != *filter) continue;
      if (skipped++ < offset) continue;
    }
    auto it = job->errors.find(static_cast<TaskIndex>(t));
    out.push_back({static_cast<TaskIndex>(t), s, total_attempts(*job, static_cast<TaskIndex>(t)),
                   it == job->errors.end() ? std::string() : it->second});
  }
  return out;
}

void Scheduler::task_states(JobId id, uint64_t offset, uint64_t limit,
                            std::vector<TaskState>& out) const {
  const Job* job = find_job(id);
  if (!job || offset >= job->task_count) return;
  const uint64_t end = offset + std::min<uint64_t>(limit, job->task_count - offset);
  out.reserve(out.size() + (end - offset));
  for (uint64_t t = offset; t < end; ++t) out.push_back(reported(job->state[t]));
}

common::FrameSet Scheduler::task_frames(JobId id, TaskIndex task) const {
  const Job* job = find_job(id);
  if (!job || task >= job->task_count) return {};
  auto [first, last] = job->span(task);
  return job->spec.frames.slice(first, last - first);
}

std::vector<WorkerView> Scheduler::workers() const {
  std::vector<WorkerView> out;
  for (const auto& [id, w] : workers_) {
    WorkerView view;
    view.id = id;
    view.spec = w.spec;
    view.alive = w.alive;
    view.last_seen = w.last_seen;
    view.cores_used = w.cores_used;
    view.gpus_used = w.gpus_used;
    view.memory_used = w.memory_used;
    if (auto it = controls_.find(w.spec.name); it != controls_.end()) {
      view.control = it->second.first;
      view.control_reason = it->second.second;
    }
    for (const TaskKey& key : w.running) {
      auto it = leases_.find(key);
      view.running.push_back({key.job, key.task, it == leases_.end() ? 0 : it->second.token});
    }
    out.push_back(std::move(view));
  }
  return out;
}

WorkerTally Scheduler::worker_tally() const {
  WorkerTally tally;
  for (const auto& [id, w] : workers_) {
    if (!w.alive) {
      ++tally.lost;
      continue;
    }
    tally.slots += w.spec.slots + w.spec.interactive_slots;
    tally.slots_busy += w.running.size();
    auto it = controls_.empty() ? controls_.end() : controls_.find(w.spec.name);
    const WorkerControl control =
        it == controls_.end() ? WorkerControl::kEnabled : it->second.first;
    if (control == WorkerControl::kDisabled) {
      ++tally.disabled;
    } else if (control == WorkerControl::kDraining) {
      ++tally.draining;
    } else {
      ++(w.running.empty() ? tally.idle : tally.busy);
    }
  }
  return tally;
}

std::string Scheduler::worker_name(WorkerId id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? std::string() : it->second.spec.name;
}

}  // namespace farmhand::core
