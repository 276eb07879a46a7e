// Scheduler::audit: the scheduler's own indexes checked against what they index
// (run queues, parked jobs, limit tokens, per-worker counts, session lookups),
// for tests. Slow: it walks everything.
#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "daemon/core/scheduler.h"
#include "daemon/core/scheduler_job.h"

namespace farmhand::core {

std::string Scheduler::audit() const {
  if (job_index_.size() != jobs_.size()) return "job index and jobs differ in size";
  uint64_t queued = 0;
  std::vector<uint64_t> parked(limits_.size(), 0);
  for (const auto& [id, owned] : jobs_) {
    const Job& job = *owned;
    auto indexed = job_index_.find(id);
    if (indexed == job_index_.end() || indexed->second != &job) {
      return fmt::format("job {} not indexed", id);
    }
    const bool runnable =
        job.durable && !job.paused && !job.cancelled && job.count(TaskState::kQueued) > 0 &&
        (job.spec.max_running == 0 || job.count(TaskState::kRunning) < job.spec.max_running);
    if (runnable != job.queued_key.has_value()) {
      return fmt::format("job {} {} but {}", id, runnable ? "runnable" : "not runnable",
                         job.queued_key ? "queued" : "not queued");
    }
    // A killed attempt's lease never runs on: its token is no task's live lease.
    for (const auto& [task, tokens] : job.killed_leases) {
      auto lease = leases_.find(TaskKey{id, task});
      if (lease != leases_.end() && job.killed(task, lease->second.token)) {
        return fmt::format("job {} task {} runs under a lease that was killed", id, task);
      }
    }
    if (!job.queued_key) continue;
    const QueueKey key{-int64_t{job.spec.priority}, job.count(TaskState::kRunning), id};
    if (*job.queued_key != key) return fmt::format("job {} queued under a stale key", id);
    if (job.queued_pool != job.spec.pool) return fmt::format("job {} queued in another pool", id);
    if (job.queued_group != share_group(job)) {
      return fmt::format("job {} queued in another share group", id);
    }
    if (job.queued_cores != job.spec.cores || job.queued_memory != job.spec.memory) {
      return fmt::format("job {} queued under stale requests", id);
    }
    const PoolQueues& queues = job.parked_on ? limits_[*job.parked_on].waiting : runnable_;
    auto pool = queues.by_pool.find(job.queued_pool);
    if (pool == queues.by_pool.end()) return fmt::format("job {} has no pool queue", id);
    auto group = pool->second.find(job.queued_group);
    if (group == pool->second.end()) return fmt::format("job {} has no group queue", id);
    const JobQueue& queue = group->second;
    auto it = queue.all.find(key);
    if (it == queue.all.end() || it->second != &job) {
      return fmt::format("job {} missing from its queue", id);
    }
    if (queue.interactive.count(key) != (job.spec.interactive ? 1u : 0u)) {
      return fmt::format("job {} in the interactive lane queue wrongly", id);
    }
    if (job.parked_on) {
      if (std::find(job.limit_ids.begin(), job.limit_ids.end(), *job.parked_on) ==
          job.limit_ids.end()) {
        return fmt::format("job {} parked on a limit it does not name", id);
      }
      ++parked[*job.parked_on];
    } else {
      ++queued;
    }
  }
  auto count = [](const PoolQueues& queues) {
    uint64_t n = 0;
    for (const auto& [pool, groups] : queues.by_pool) {
      for (const auto& [group, queue] : groups) {
        n += queue.all.size();
        uint64_t cores = 0;
        uint64_t memory = 0;
        for (const auto& [key, job] : queue.all) {
          cores += job->queued_cores > 0 ? 1 : 0;
          memory += job->queued_memory > 0 ? 1 : 0;
        }
        if (cores != queue.cores.size() || memory != queue.memory.size()) return UINT64_MAX;
        for (const auto& [key, job] : queue.interactive) {
          if (!queue.all.count(key)) return UINT64_MAX;
          (void)job;
        }
      }
    }
    return n;
  };
  if (count(runnable_) != queued || runnable_.size != queued) {
    return fmt::format("run queue holds {} jobs (size {}), {} are queued", count(runnable_),
                       runnable_.size, queued);
  }
  std::vector<uint32_t> tokens(limits_.size(), 0);
  std::vector<uint64_t> project_running(projects_.size(), 0);
  std::vector<uint64_t> pool_running(pools_.size(), 0);
  for (const auto& [key, lease] : leases_) {
    for (uint32_t limit : lease.limits_held) ++tokens[limit];
    ++project_running[lease.project];
    ++pool_running[lease.pool];
  }
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i].running != pool_running[i]) {
      return fmt::format("pool '{}' counts {} running tasks, leases {}", pools_[i].name,
                         pools_[i].running, pool_running[i]);
    }
  }
  if (auto wrong = audit_totals(); !wrong.empty()) return wrong;
  uint64_t others = 0;
  for (size_t i = 0; i < projects_.size(); ++i) {
    if (!projects_[i].named) others += project_running[i];
  }
  if (others != others_running_) {
    return fmt::format("the default share counts {} running tasks, leases {}", others_running_,
                       others);
  }
  for (size_t i = 0; i < projects_.size(); ++i) {
    if (projects_[i].running != project_running[i]) {
      return fmt::format("project '{}' counts {} running tasks, leases {}", projects_[i].name,
                         projects_[i].running, project_running[i]);
    }
  }
  for (size_t i = 0; i < limits_.size(); ++i) {
    const Limit& limit = limits_[i];
    if (count(limit.waiting) != parked[i] || limit.waiting.size != parked[i]) {
      return fmt::format("limit {} holds {} parked jobs (size {}), {} are parked on it", limit.name,
                         count(limit.waiting), limit.waiting.size, parked[i]);
    }
    if (limit.in_use != tokens[i]) {
      return fmt::format("limit {} counts {} tokens in use, leases hold {}", limit.name,
                         limit.in_use, tokens[i]);
    }
  }

  uint64_t named = 0;
  uint64_t with_instance = 0;
  for (const auto& [id, worker] : workers_) {
    uint32_t reserved = 0;
    uint64_t cores = 0;
    uint64_t memory = 0;
    uint64_t gpus = 0;
    for (const TaskKey& key : worker.running) {
      auto lease = leases_.find(key);
      if (lease == leases_.end() || lease->second.worker != id) {
        return fmt::format("worker {} runs task {}/{} without its lease", worker.spec.name, key.job,
                           key.task);
      }
      if (lease->second.interactive_slot) ++reserved;
      cores += lease->second.cores;
      memory += lease->second.memory;
      gpus += lease->second.gpus;
    }
    if (cores != worker.cores_used || memory != worker.memory_used) {
      return fmt::format("worker {} counts {} cores and {} bytes booked, its leases {} and {}",
                         worker.spec.name, worker.cores_used, worker.memory_used, cores, memory);
    }
    if (gpus != worker.gpus_used) {
      return fmt::format("worker {} counts {} GPUs booked, its leases {}", worker.spec.name,
                         worker.gpus_used, gpus);
    }
    if (reserved != worker.interactive_used) {
      return fmt::format("worker {} counts {} reserved slots in use, its leases {}",
                         worker.spec.name, worker.interactive_used, reserved);
    }
    auto listed = [id](const auto& index, const std::string& key) {
      auto it = index.find(key);
      return it != index.end() && std::count(it->second.begin(), it->second.end(), id) == 1;
    };
    if (!listed(sessions_by_name_, worker.spec.name)) {
      return fmt::format("session {} not found by its name {}", id, worker.spec.name);
    }
    ++named;
    if (!worker.spec.instance.empty()) {
      if (!listed(sessions_by_instance_, worker.spec.instance)) {
        return fmt::format("session {} not found by its instance", id);
      }
      ++with_instance;
    }
  }
  auto entries = [](const auto& index) {
    uint64_t n = 0;
    for (const auto& [key, ids] : index) n += ids.size();
    return n;
  };
  if (entries(sessions_by_name_) != named || entries(sessions_by_instance_) != with_instance) {
    return "session lookups list sessions that are gone";
  }
  return {};
}

std::string Scheduler::audit_totals() const {
  std::array<uint64_t, 6> jobs{};
  std::array<uint64_t, kTaskStateCount> tasks{};
  std::vector<uint64_t> project_open(projects_.size(), 0);
  std::vector<uint64_t> pool_open(pools_.size(), 0);
  for (const auto& [id, owned] : jobs_) {
    const Job& job = *owned;
    ++jobs[static_cast<size_t>(job.job_state)];
    for (size_t s = 0; s < tasks.size(); ++s) tasks[s] += job.counts[s];
    if (projects_[job.project_id].name != job.spec.project ||
        pools_[job.pool_id].name != job.spec.pool) {
      return fmt::format("job {} filed under another project or pool", id);
    }
    const bool finished = job.job_state == JobState::kSucceeded ||
                          job.job_state == JobState::kFailed ||
                          job.job_state == JobState::kCancelled;
    if (finished) continue;
    ++project_open[job.project_id];
    ++pool_open[job.pool_id];
  }
  for (size_t s = 0; s < jobs.size(); ++s) {
    if (jobs[s] != job_totals_[s]) {
      return fmt::format("{} jobs are {}, the totals say {}", jobs[s],
                         job_state_name(static_cast<JobState>(s)), job_totals_[s]);
    }
  }
  for (size_t s = 0; s < tasks.size(); ++s) {
    if (tasks[s] != task_totals_[s]) {
      return fmt::format("{} tasks are in state {}, the totals say {}", tasks[s], s,
                         task_totals_[s]);
    }
  }
  for (size_t i = 0; i < projects_.size(); ++i) {
    if (projects_[i].open_jobs != project_open[i]) {
      return fmt::format("project '{}' counts {} unfinished jobs, there are {}", projects_[i].name,
                         projects_[i].open_jobs, project_open[i]);
    }
  }
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i].open_jobs != pool_open[i]) {
      return fmt::format("pool '{}' counts {} unfinished jobs, there are {}", pools_[i].name,
                         pools_[i].open_jobs, pool_open[i]);
    }
  }
  return {};
}

}  // namespace farmhand::core
