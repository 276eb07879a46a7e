// The scheduler's private parts shared by its source files (scheduler.cpp: jobs,
// tasks, workers, dispatch; scheduler_controls.cpp: a wrangler's controls).
// Not for use outside daemon/core.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "daemon/core/scheduler.h"

namespace farmhand::core {

// The attempts of a task's current budget live in one byte per task.
inline constexpr uint32_t kMaxAttemptsLimit = 100;

inline bool is_broken(TaskState s) {
  return s == TaskState::kFailed || s == TaskState::kDead || s == TaskState::kCancelled;
}

struct Scheduler::Job {
  JobId id = 0;
  JobSpec spec;
  uint64_t task_count = 0;
  // spec.chunk_runs indexed: each run's first task and first frame position.
  std::vector<uint64_t> run_first_task;
  std::vector<uint64_t> run_first_pos;
  uint64_t frames_succeeded = 0;
  // Tasks from here on have never changed (no row in the store): only they may
  // be cut again into chunks of another size.
  uint64_t touched_end = 0;
  // Adaptive chunks: the frames and the time of the attempts that succeeded.
  uint64_t sampled_frames = 0;
  int64_t sampled_ms = 0;
  std::vector<TaskState> state;
  std::vector<uint8_t> attempts;  // used of the current budget of max_attempts
  // Attempts of earlier budgets, for the few tasks that were retried: attempt numbers
  // continue across retries, so no attempt's log replaces another's.
  std::unordered_map<TaskIndex, uint32_t> budget_base;
  std::vector<uint32_t> unmet;  // --after-frames: upstream tasks each task still waits for
  uint32_t after_unmet = 0;     // --after: upstream jobs not yet succeeded
  std::string after_broken;     // --after: why the whole-job dependency can never be met
  std::deque<TaskIndex> ready;  // queued tasks behind the cursor (retries, released waits)
  uint64_t cursor = 0;          // tasks from here on are scanned in order
  std::array<uint64_t, kTaskStateCount> counts{};
  bool paused = false;
  bool cancelled = false;
  bool durable = true;  // false until the shell has committed the job
  JobState job_state = JobState::kQueued;
  std::vector<JobId> after_dependants;
  std::vector<JobId> frame_dependants;
  std::unordered_map<TaskIndex, std::string> errors;
  std::deque<TaskIndex> last_errors;  // most recent first
  // Tasks backing off -> the generation of their live backoff timer. A task can back
  // off again with the same attempt count (retry() resets it; a worker may keep a
  // requeued task and fail it), so the count alone cannot tell a stale timer.
  std::unordered_map<TaskIndex, uint64_t> backoff_generation;
  // Tasks whose attempts `farmhand kill` (or skip) stopped -> those attempts' lease
  // tokens: their late results are stale, never taken for a lapsed lease's success.
  // (Kills are a wrangler's, by hand: few.)
  std::unordered_map<TaskIndex, std::vector<LeaseToken>> killed_leases;

  bool killed(TaskIndex task, LeaseToken lease) const {
    auto it = killed_leases.find(task);
    return it != killed_leases.end() &&
           std::find(it->second.begin(), it->second.end(), lease) != it->second.end();
  }

  uint64_t backoff_timers_armed = 0;
  // Where the job is queued, if it is: its key, the pool it is filed under (a
  // `job set --pool` changes spec.pool first), and the limit it is parked on
  // (else it is in runnable_).
  std::optional<QueueKey> queued_key;
  std::string queued_pool;
  uint32_t queued_group = 0;  // its share group then
  uint32_t queued_cores = 0;  // its requests then
  uint64_t queued_memory = 0;
  std::optional<uint32_t> parked_on;
  uint32_t project_id = 0;
  uint32_t pool_id = 0;             // spec.pool, interned
  std::vector<uint32_t> limit_ids;  // spec.limits, resolved

  // Bad-host avoidance, by worker name: failed attempts and blocks (few jobs have any).
  struct HostRecord {
    uint32_t failures = 0;
    bool blocked = false;
    std::string reason;
  };

  std::map<std::string, HostRecord> hosts;
  uint32_t blocked_count = 0;

  uint64_t count(TaskState s) const { return counts[static_cast<size_t>(s)]; }

  uint64_t terminal() const {
    return count(TaskState::kSucceeded) + count(TaskState::kFailed) + count(TaskState::kDead) +
           count(TaskState::kCancelled);
  }

  uint64_t broken() const {
    return count(TaskState::kFailed) + count(TaskState::kDead) + count(TaskState::kCancelled);
  }

  uint32_t max_attempts() const { return spec.max_attempts; }

  bool sized() const { return spec.cores > 0 || spec.memory > 0 || spec.gpus > 0; }

  // Whether nothing of the job runs again unless it is retried.
  bool finished() const { return terminal() == task_count || cancelled; }

  // The one answer to acting on a finished job (pause, resume, retry of a
  // succeeded job, job set): "job 7 already finished (succeeded)".
  Error finished_refusal() const {
    return Error{ErrorCode::kInvalidArgument,
                 fmt::format("job {} already finished ({})", id, job_state_name(job_state))};
  }

  // Positions [first, last) of the task's frames in the job's frame set.
  std::pair<uint64_t, uint64_t> span(TaskIndex task) const {
    if (spec.chunk_runs.empty()) {
      uint64_t first = uint64_t{task} * spec.chunk;
      return {first, std::min<uint64_t>(first + spec.chunk, spec.frames.size())};
    }
    const size_t r = static_cast<size_t>(
        std::upper_bound(run_first_task.begin(), run_first_task.end(), uint64_t{task}) -
        run_first_task.begin() - 1);
    const uint64_t size = spec.chunk_runs[r].frames;
    const uint64_t first = run_first_pos[r] + (task - run_first_task[r]) * size;
    return {first, first + size};
  }

  std::optional<TaskIndex> task_of(int64_t frame) const {
    auto index = spec.frames.index_of(frame);
    if (!index) return std::nullopt;
    if (spec.chunk_runs.empty()) return static_cast<TaskIndex>(*index / spec.chunk);
    const size_t r = static_cast<size_t>(
        std::upper_bound(run_first_pos.begin(), run_first_pos.end(), uint64_t{*index}) -
        run_first_pos.begin() - 1);
    return static_cast<TaskIndex>(run_first_task[r] +
                                  (*index - run_first_pos[r]) / spec.chunk_runs[r].frames);
  }

  // Indexes spec.chunk_runs; returns the task count they make.
  uint64_t index_runs() {
    run_first_task.clear();
    run_first_pos.clear();
    uint64_t tasks = 0;
    uint64_t pos = 0;
    for (const ChunkRun& run : spec.chunk_runs) {
      run_first_task.push_back(tasks);
      run_first_pos.push_back(pos);
      tasks += run.tasks;
      pos += run.tasks * run.frames;
    }
    return spec.chunk_runs.empty() ? (spec.frames.size() + spec.chunk - 1) / spec.chunk : tasks;
  }

  int64_t first_frame(TaskIndex task) const { return spec.frames.frame_at(span(task).first); }
};
}  // namespace farmhand::core
