// A wrangler's controls over the farm: limits, workers disabled or draining,
// workers blocked for a job after failing it, and jobs changed while they run.
#include <algorithm>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon/core/scheduler.h"
#include "daemon/core/scheduler_job.h"

namespace farmhand::core {

namespace {

constexpr size_t kBlockReasonBytes = 300;

}  // namespace

// ------------------------------------------------------------------ limits

void Scheduler::add_lease(const TaskKey& key, Lease lease) {
  if (const Job* job = find_job(key.job)) {
    lease.limits_held = job->limit_ids;
    for (uint32_t id : lease.limits_held) ++limits_[id].in_use;
    lease.project = job->project_id;
    lease.pool = job->pool_id;
    lease.cores = job->spec.cores;
    lease.memory = job->spec.memory;
    lease.gpus = job->spec.gpus;
  }
  Project& project = projects_[lease.project];
  ++project.running;
  if (!project.named) ++others_running_;
  ++pools_[lease.pool].running;
  Lease& stored = leases_[key] = std::move(lease);
  if (auto w = workers_.find(stored.worker); w != workers_.end()) attach(w->second, key, stored);
}

void Scheduler::attach(Worker& worker, const TaskKey& key, const Lease& lease) {
  if (!worker.running.insert(key).second) return;
  if (lease.interactive_slot) ++worker.interactive_used;
  worker.cores_used += lease.cores;
  worker.memory_used += lease.memory;
  worker.gpus_used += lease.gpus;
}

void Scheduler::detach(Worker& worker, const TaskKey& key, const Lease& lease) {
  if (worker.running.erase(key) == 0) return;
  if (lease.interactive_slot && worker.interactive_used > 0) --worker.interactive_used;
  worker.cores_used -= std::min(worker.cores_used, lease.cores);
  worker.memory_used -= std::min(worker.memory_used, lease.memory);
  worker.gpus_used -= std::min(worker.gpus_used, lease.gpus);
}

uint32_t Scheduler::limit_id(const std::string& name) {
  auto [it, added] = limit_ids_.try_emplace(name, static_cast<uint32_t>(limits_.size()));
  if (added) limits_.push_back(Limit{name, std::nullopt, 0, {}});
  return it->second;
}

std::optional<uint32_t> Scheduler::full_limit(const Job& job) const {
  for (uint32_t id : job.limit_ids) {
    const Limit& limit = limits_[id];
    if (!limit.capacity || limit.in_use >= *limit.capacity) return id;
  }
  return std::nullopt;
}

void Scheduler::set_limit(const std::string& name, uint32_t capacity) {
  // The jobs parked on it are candidates again once it has a free token.
  limits_[limit_id(name)].capacity = capacity;
}

void Scheduler::unset_limit(const std::string& name) {
  auto it = limit_ids_.find(name);
  if (it != limit_ids_.end()) limits_[it->second].capacity.reset();
}

Result<void> Scheduler::check_limits(const std::vector<std::string>& names) const {
  for (const std::string& name : names) {
    auto it = limit_ids_.find(name);
    if (it != limit_ids_.end() && limits_[it->second].capacity) continue;
    std::vector<std::string> known;
    for (const Limit& limit : limits_) {
      if (limit.capacity) known.push_back(limit.name);
    }
    return fail(ErrorCode::kInvalidArgument,
                known.empty() ? fmt::format("unknown limit '{}': no limits are configured", name)
                              : fmt::format("unknown limit '{}'; the limits are {}", name,
                                            fmt::join(known, ", ")));
  }
  return {};
}

std::vector<LimitView> Scheduler::limits() const {
  std::vector<LimitView> out;
  for (const Limit& limit : limits_) {
    if (!limit.capacity && limit.in_use == 0 && limit.waiting.empty()) continue;
    // Parked jobs of a limit with a free token wait for a worker, not for it.
    out.push_back(
        {limit.name, limit.capacity, limit.in_use, limit.open() ? 0 : limit.waiting.size});
  }
  std::sort(out.begin(), out.end(),
            [](const LimitView& a, const LimitView& b) { return a.name < b.name; });
  return out;
}

JobHold Scheduler::hold(JobId id) const {
  const Job* job = find_job(id);
  if (!job || job->count(TaskState::kQueued) == 0) return {};
  if (job->spec.max_running > 0 && job->count(TaskState::kRunning) >= job->spec.max_running) {
    return {JobHold::Kind::kMaxRunning,
            {},
            job->spec.max_running,
            static_cast<uint32_t>(job->count(TaskState::kRunning)),
            {}};
  }
  if (auto full = full_limit(*job)) {
    const Limit& limit = limits_[*full];
    return {JobHold::Kind::kLimit, limit.name, limit.capacity, limit.in_use, {}};
  }
  if (job->blocked_count > 0) {
    auto blocked = blocked_eligible_workers(*job);
    if (blocked) return {JobHold::Kind::kBlocked, {}, {}, 0, std::move(*blocked)};
  }
  JobHold held;
  if (!job->spec.tag_choices.empty()) {
    bool any_serves = false;
    bool any_has = false;
    for (const auto& [worker_id, worker] : workers_) {
      if (!worker.alive || !worker.serves(job->spec.pool)) continue;
      any_serves = true;
      any_has = any_has || worker.has_tags(job->spec.tag_choices);
    }
    if (any_serves && !any_has) {
      held.kind = JobHold::Kind::kTags;
      std::vector<std::string> choices;
      for (const auto& choice : job->spec.tag_choices) {
        choices.push_back(fmt::format("{}", fmt::join(choice, "|")));
      }
      held.tags = fmt::format("{}", fmt::join(choices, ", "));
      return held;
    }
  }
  if (unsatisfiable(*job, held)) held.kind = JobHold::Kind::kUnsatisfiable;
  return held;
}

// ------------------------------------------------------------------ resources

bool Scheduler::unsatisfiable(const Job& job, JobHold& held) const {
  if (!job.sized()) return false;
  held.cores = 0;
  held.memory = 0;
  held.gpus = 0;
  bool any = false;
  for (const auto& [id, worker] : workers_) {
    if (!worker.alive || !worker.serves(job.spec.pool)) continue;
    if (!job.spec.tag_choices.empty() && !worker.has_tags(job.spec.tag_choices)) continue;
    any = true;
    // Unknown cores or memory (an older worker) might be enough.
    bool enough_cores = worker.spec.cores == 0 || worker.spec.cores >= job.spec.cores;
    bool enough_memory = worker.spec.memory == 0 || worker.spec.memory >= job.spec.memory;
    if (enough_cores && enough_memory && worker.spec.gpus >= job.spec.gpus) return false;
    held.cores = std::max(held.cores, worker.spec.cores);
    held.memory = std::max(held.memory, worker.spec.memory);
    held.gpus = std::max(held.gpus, worker.spec.gpus);
  }
  // No live worker of the pool at all is another hold (the shell says so).
  return any;
}

void Scheduler::grow_memory_request(Job& job, const TaskOutcome& outcome) {
  if (job.spec.memory_retry_factor <= 1.0) return;
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  double grown = static_cast<double>(std::max(job.spec.memory, outcome.peak_memory)) *
                 job.spec.memory_retry_factor;
  if (!(grown < 1e18)) return;
  uint64_t memory = (static_cast<uint64_t>(grown) + kMiB - 1) / kMiB * kMiB;
  if (memory <= job.spec.memory) return;
  job.spec.memory = memory;
  refresh_runnable(job);
  outbox_.specs.push_back(job.id);
}

// ------------------------------------------------------------------ fair share

uint32_t Scheduler::project_id(const std::string& name) {
  auto [it, added] = project_ids_.try_emplace(name, static_cast<uint32_t>(projects_.size()));
  if (added) projects_.push_back(Project{name, 1, 0, false, 0});
  return it->second;
}

uint32_t Scheduler::pool_id(const std::string& name) {
  auto [it, added] = pool_ids_.try_emplace(name, static_cast<uint32_t>(pools_.size()));
  if (added) pools_.push_back(Pool{name, 0, 0});
  return it->second;
}

void Scheduler::set_job_state(Job& job, JobState state) {
  count_job(job, -1);
  job.job_state = state;
  count_job(job, +1);
}

void Scheduler::count_job(const Job& job, int sign) {
  const auto add = [sign](uint64_t& n) { n = sign > 0 ? n + 1 : n - 1; };
  add(job_totals_[static_cast<size_t>(job.job_state)]);
  const bool finished = job.job_state == JobState::kSucceeded ||
                        job.job_state == JobState::kFailed || job.job_state == JobState::kCancelled;
  if (finished) return;
  add(projects_[job.project_id].open_jobs);
  add(pools_[job.pool_id].open_jobs);
}

FarmTotals Scheduler::totals() const {
  FarmTotals out;
  out.jobs = job_totals_;
  out.tasks = task_totals_;
  for (const Pool& pool : pools_) {
    if (pool.running > 0 || pool.open_jobs > 0)
      out.running_by_pool.emplace_back(pool.name, pool.running);
  }
  for (const Project& project : projects_) {
    if (project.running > 0 || project.open_jobs > 0) {
      out.running_by_project.emplace_back(project.name, project.running);
    }
  }
  return out;
}

uint32_t Scheduler::share_group(const Job& job) const {
  return shares_on_ && projects_[job.project_id].named ? job.project_id : 0;
}

void Scheduler::set_shares(const std::map<std::string, uint32_t>& weights) {
  for (Project& project : projects_) {
    project.weight = 1;
    project.named = false;
  }
  for (const auto& [name, weight] : weights) {
    if (name.empty()) continue;  // the jobs of no project are in the default share
    Project& project = projects_[project_id(name)];
    project.weight = std::max(weight, 1u);
    project.named = true;
  }
  others_running_ = 0;
  for (const Project& project : projects_) {
    if (!project.named) others_running_ += project.running;
  }
  // Every queued job moves to the group it belongs in now.
  shares_on_ = !weights.empty();
  for (auto& [id, job] : jobs_) refresh_runnable(*job);
}

std::vector<ShareView> Scheduler::shares() const {
  std::vector<ShareView> out;
  std::vector<uint64_t> queued(projects_.size(), 0);
  for (const auto& [id, job] : jobs_) {
    if (job->queued_key) ++queued[job->project_id];
  }
  for (size_t i = 0; i < projects_.size(); ++i) {
    const Project& project = projects_[i];
    if (!project.named && project.running == 0 && queued[i] == 0) continue;
    out.push_back({project.name, project.weight, project.running, queued[i], project.named});
  }
  std::sort(out.begin(), out.end(),
            [](const ShareView& a, const ShareView& b) { return a.project < b.project; });
  return out;
}

// ------------------------------------------------------------------ worker control

std::string_view worker_control_name(WorkerControl control) {
  switch (control) {
    case WorkerControl::kEnabled:
      return "enabled";
    case WorkerControl::kDisabled:
      return "disabled";
    case WorkerControl::kDraining:
      return "draining";
  }
  return "enabled";
}

void Scheduler::control_worker(const std::string& name, WorkerControl control, std::string reason) {
  if (control == WorkerControl::kEnabled) {
    controls_.erase(name);
  } else {
    controls_[name] = {control, std::move(reason)};
  }
}

bool Scheduler::knows_worker_name(const std::string& name) const {
  return controls_.count(name) || sessions_by_name_.count(name);
}

// ------------------------------------------------------------------ bad hosts

bool Scheduler::blocked_for(const Job& job, const std::string& worker) const {
  auto it = job.hosts.find(worker);
  return it != job.hosts.end() && it->second.blocked;
}

std::optional<std::vector<std::string>> Scheduler::blocked_eligible_workers(const Job& job) const {
  std::vector<std::string> blocked;
  for (const auto& [id, worker] : workers_) {
    if (!worker.alive || (!controls_.empty() && controls_.count(worker.spec.name))) continue;
    if (!worker.serves(job.spec.pool)) continue;
    if (!blocked_for(job, worker.spec.name)) return std::nullopt;
    blocked.push_back(worker.spec.name);
  }
  if (blocked.empty()) return std::nullopt;  // nobody serves it at all: not a block
  std::sort(blocked.begin(), blocked.end());
  return blocked;
}

void Scheduler::count_failure(Job& job, const std::string& worker, const std::string& error) {
  if (options_.block_after_failures == 0 || worker.empty()) return;
  Job::HostRecord& host = job.hosts[worker];
  if (host.failures < std::numeric_limits<uint32_t>::max()) ++host.failures;
  if (host.blocked || host.failures < options_.block_after_failures) return;
  host.blocked = true;
  host.reason = error.substr(0, kBlockReasonBytes);
  ++job.blocked_count;
  WorkerBlock block{job.id, worker, host.failures, host.reason};
  outbox_.blocks.push_back({block, true});
  Notice notice{Notice::Kind::kWorkerBlocked, job.id, 0, 0, worker, host.reason, {}};
  notice.every_worker_blocked = blocked_eligible_workers(job).has_value();
  outbox_.notices.push_back(std::move(notice));
}

Result<uint64_t> Scheduler::unblock(JobId id, const std::string& worker) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  uint64_t cleared = 0;
  for (auto it = job->hosts.begin(); it != job->hosts.end();) {
    if (!worker.empty() && it->first != worker) {
      ++it;
      continue;
    }
    if (it->second.blocked) {
      ++cleared;
      --job->blocked_count;
      outbox_.blocks.push_back({WorkerBlock{id, it->first, it->second.failures, {}}, false});
    }
    it = job->hosts.erase(it);
  }
  if (!worker.empty() && cleared == 0) {
    return fail(ErrorCode::kNotFound,
                fmt::format("worker '{}' is not blocked for job {}", worker, id));
  }
  return cleared;
}

std::vector<WorkerBlock> Scheduler::blocked_workers(JobId id) const {
  std::vector<WorkerBlock> out;
  const Job* job = find_job(id);
  if (!job || job->blocked_count == 0) return out;
  for (const auto& [name, host] : job->hosts) {
    if (host.blocked) out.push_back({id, name, host.failures, host.reason});
  }
  return out;
}

void Scheduler::restore_block(const WorkerBlock& block) {
  Job* job = find_job(block.job);
  if (!job || block.worker.empty()) return;
  Job::HostRecord& host = job->hosts[block.worker];
  if (!host.blocked) ++job->blocked_count;
  host = {block.failures, true, block.reason};
}

// ------------------------------------------------------------------ live changes

Result<void> Scheduler::update_job(JobId id, const JobUpdate& update) {
  Job* job = find_job(id);
  if (!job) return fail(ErrorCode::kNotFound, fmt::format("unknown job {}", id));
  if (job->finished()) return fail(job->finished_refusal());
  if (update.max_attempts && *update.max_attempts > kMaxAttemptsLimit) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("max attempts {} over the limit of {}",
                                                         *update.max_attempts, kMaxAttemptsLimit));
  }
  std::vector<std::string> limits;
  if (update.limits) {
    limits = *update.limits;
    std::sort(limits.begin(), limits.end());
    limits.erase(std::unique(limits.begin(), limits.end()), limits.end());
    if (auto ok = check_limits(limits); !ok) return ok;
  }
  // Everything is checked: apply it all.
  if (update.priority) job->spec.priority = *update.priority;
  if (update.max_running) job->spec.max_running = *update.max_running;
  if (update.pool) {
    count_job(*job, -1);
    job->spec.pool = *update.pool;
    job->pool_id = pool_id(job->spec.pool);
    count_job(*job, +1);
  }
  if (update.max_attempts) {
    job->spec.max_attempts =
        *update.max_attempts == 0 ? options_.default_max_attempts : *update.max_attempts;
  }
  if (update.timeout) job->spec.timeout = *update.timeout;
  if (update.cores) job->spec.cores = *update.cores;
  if (update.gpus) job->spec.gpus = *update.gpus;
  if (update.memory) job->spec.memory = *update.memory;
  if (update.memory_retry_factor) job->spec.memory_retry_factor = *update.memory_retry_factor;
  if (update.limits) {
    job->spec.limits = std::move(limits);
    job->limit_ids.clear();
    for (const std::string& name : job->spec.limits) job->limit_ids.push_back(limit_id(name));
  }
  if (update.timeout) {
    // The running attempts' timers were armed for the old timeout.
    for (auto it = leases_.lower_bound(TaskKey{id, 0}); it != leases_.end() && it->first.job == id;
         ++it) {
      arm_lease_timer(it->first, it->second);
    }
  }
  // New priority, pool, cap or limits: the job's place in (or out of) the queues.
  refresh_runnable(*job);
  return {};
}

}  // namespace farmhand::core
