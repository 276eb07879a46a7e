// Task-level actions: retry, kill and skip a job's selected tasks, and requeue
// a finished job (`farmhand retry|kill|skip|requeue`).
#include <algorithm>

#include <fmt/format.h>

#include "daemon/core/scheduler.h"
#include "daemon/core/scheduler_job.h"

namespace farmhand::core {

namespace {

// The error text of a task marked succeeded without running.
constexpr const char* kSkipped = "skipped (farmhand skip)";
// As in scheduler.cpp: a task whose state init_untouched_tasks derives.
constexpr auto kUntouched = static_cast<TaskState>(0xff);

bool matches_state(TaskState actual, TaskState wanted) {
  if (wanted == TaskState::kQueued) {
    return actual == TaskState::kQueued || actual == TaskState::kBackoff;
  }
  return actual == wanted;
}

}  // namespace

Result<std::vector<TaskIndex>> Scheduler::select_tasks(const Job& job,
                                                       const TaskSelection& selection) const {
  std::vector<TaskIndex> picked;
  if (selection.tasks) {
    for (const common::FrameRange& range : selection.tasks->ranges()) {
      const int64_t low = std::min(range.first, range.last());
      const int64_t high = std::max(range.first, range.last());
      if (low < 0 || static_cast<uint64_t>(high) >= job.task_count) {
        const int64_t bad = low < 0 ? low : high;
        return fail(
            ErrorCode::kInvalidArgument,
            fmt::format("task {} out of range: job {} has {} task{} (0-{})", bad, job.id,
                        job.task_count, job.task_count == 1 ? "" : "s", job.task_count - 1));
      }
      for (uint64_t i = 0; i < range.count; ++i) {
        picked.push_back(
            static_cast<TaskIndex>(range.first + range.step * static_cast<int64_t>(i)));
      }
    }
  }
  if (selection.frames) {
    std::vector<TaskIndex> covering;
    const common::FrameSet& wanted = *selection.frames;
    for (uint64_t i = 0; i < wanted.size(); ++i) {
      const int64_t frame = wanted.frame_at(i);
      auto task = job.task_of(frame);
      if (!task) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("frame {} is not in job {} (frames {})", frame, job.id,
                                job.spec.frames.to_string()));
      }
      // Frames of one task come together: skip the rest of its chunk's run.
      if (covering.empty() || covering.back() != *task) covering.push_back(*task);
    }
    if (selection.tasks) {
      std::sort(covering.begin(), covering.end());
      std::sort(picked.begin(), picked.end());
      std::vector<TaskIndex> both;
      std::set_intersection(picked.begin(), picked.end(), covering.begin(), covering.end(),
                            std::back_inserter(both));
      picked = std::move(both);
    } else {
      picked = std::move(covering);
    }
  }
  if (!selection.names_tasks()) {
    picked.reserve(job.task_count);
    for (uint64_t t = 0; t < job.task_count; ++t) picked.push_back(static_cast<TaskIndex>(t));
  }
  std::sort(picked.begin(), picked.end());
  picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
  if (selection.state) {
    std::erase_if(picked,
                  [&](TaskIndex t) { return !matches_state(job.state[t], *selection.state); });
  }
  return picked;
}

uint64_t Scheduler::rerun_tasks(Job& job, const std::vector<TaskIndex>& tasks) {
  if (tasks.empty()) return 0;
  if (job.cancelled) {
    job.cancelled = false;
    outbox_.jobs.push_back({job.id, job.paused, false});
    // A cancelled job's untouched tasks have no row (its flag restored them as
    // cancelled); those that stay cancelled need one now the flag is gone, and
    // a reason, for the job may now end failed because of them.
    std::vector<bool> rerun(job.task_count, false);
    for (TaskIndex t : tasks) rerun[t] = true;
    for (TaskIndex t = 0; t < job.task_count; ++t) {
      if (rerun[t] || job.state[t] != TaskState::kCancelled) continue;
      if (!job.errors.count(t)) record_error(job, t, "job cancelled");
      persist_task(job, t);
    }
  }
  for (TaskIndex t : tasks) {
    if (uint32_t used = total_attempts(job, t); used > 0) job.budget_base[t] = used;
    job.attempts[t] = 0;
    job.errors.erase(t);
    std::erase(job.last_errors, t);
    job.state[t] = kUntouched;  // derived again below
  }
  // A fresh start on every worker too, as retry() gives.
  (void)unblock(job.id, {});
  // Re-derive with the upstreams' states now (counts are rebuilt too).
  init_untouched_tasks(job);
  for (TaskIndex t : tasks) {
    if (!is_broken(job.state[t])) persist_task(job, t);
  }
  update_job_state(job);
  refresh_runnable(job);
  return tasks.size();
}

LeaseToken Scheduler::stop_attempt(Job& job, TaskIndex task, const std::string& reason) {
  const TaskKey key{job.id, task};
  auto it = leases_.find(key);
  if (it == leases_.end()) return 0;
  if (it->second.worker != 0) {
    outbox_.cancels.push_back({it->second.worker, {job.id, task, it->second.token}, reason});
  }
  const LeaseToken token = it->second.token;
  job.killed_leases[task].push_back(token);
  release_lease(key);
  return token;
}

Result<uint64_t> Scheduler::retry_tasks(JobId id, const TaskSelection& selection, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  if (selection.state && !is_terminal(*selection.state)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("retry takes finished tasks (succeeded, failed, dead, cancelled), not "
                            "{} ones; `farmhand kill` restarts running tasks",
                            task_state_name(*selection.state)));
  }
  if (!selection.names_tasks() && !selection.state) return retry(id, now);
  auto picked = select_tasks(*job, selection);
  if (!picked) return fail(picked.error());
  // Succeeded tasks only when asked for: by index or frame, or by state.
  const bool succeeded_too = selection.names_tasks() || selection.state == TaskState::kSucceeded;
  std::erase_if(*picked, [&](TaskIndex t) {
    const TaskState s = job->state[t];
    return !(is_broken(s) || (succeeded_too && s == TaskState::kSucceeded));
  });
  return rerun_tasks(*job, *picked);
}

Result<uint64_t> Scheduler::kill_tasks(JobId id, const TaskSelection& selection, bool as_failure,
                                       const std::string& reason, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  auto picked = select_tasks(*job, selection);
  if (!picked) return fail(picked.error());
  uint64_t killed = 0;
  for (TaskIndex t : *picked) {
    if (job->state[t] != TaskState::kRunning) continue;
    const LeaseToken token = stop_attempt(*job, t, reason);
    if (as_failure) {
      // Not the worker's fault: it counts against the task, not toward a block.
      fail_attempt(*job, t, reason, {}, now);
    } else {
      // A new attempt, numbered on, that uses none of the budget.
      if (job->attempts[t] > 0) {
        --job->attempts[t];
        ++job->budget_base[t];
      }
      make_ready(*job, t);
    }
    // The row keeps the killed lease, so a restart still knows its result is stale.
    if (job->state[t] != TaskState::kDead) persist_task(*job, t, token);
    ++killed;
  }
  update_job_state(*job);
  refresh_runnable(*job);
  return killed;
}

Result<uint64_t> Scheduler::skip_tasks(JobId id, const TaskSelection& selection, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  if (job->cancelled) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("job {} is cancelled; `farmhand requeue {}` runs it again", id, id));
  }
  auto picked = select_tasks(*job, selection);
  if (!picked) return fail(picked.error());
  std::vector<TaskIndex> skipped;
  for (TaskIndex t : *picked) {
    const TaskState s = job->state[t];
    if (s == TaskState::kSucceeded) continue;
    if (s == TaskState::kRunning) stop_attempt(*job, t, "skipped by farmhand skip");
    job->backoff_generation.erase(t);  // a pending retry of it is moot
    record_error(*job, t, kSkipped);
    set_state(*job, t, TaskState::kSucceeded);
    persist_task(*job, t);
    skipped.push_back(t);
  }
  // Dependants are released once every skipped task is marked, frame by frame.
  for (TaskIndex t : skipped) on_task_terminal(*job, t, now);
  update_job_state(*job);
  refresh_runnable(*job);
  return skipped.size();
}

Result<uint64_t> Scheduler::requeue(JobId id, const TaskSelection& selection, Millis now) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  const JobState st = job->job_state;
  if (st != JobState::kSucceeded && st != JobState::kFailed && st != JobState::kCancelled) {
    return fail(
        ErrorCode::kInvalidArgument,
        fmt::format("job {} is {}; use retry or kill for its tasks", id, job_state_name(st)));
  }
  auto picked = select_tasks(*job, selection);
  if (!picked) return fail(picked.error());
  // A cancelled job may still be stopping a task (its lease is gone already).
  std::erase_if(*picked, [&](TaskIndex t) { return !is_terminal(job->state[t]); });
  (void)now;
  return rerun_tasks(*job, *picked);
}

}  // namespace farmhand::core
