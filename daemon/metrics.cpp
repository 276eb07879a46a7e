#include "daemon/metrics.h"

#include <algorithm>
#include <array>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include <prometheus/text_serializer.h>

#include "daemon/job_kinds.h"

namespace farmhand::daemon {

namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr const char* kOther = "other";

// Worker states as `farmhand workers` tells them apart.
enum WorkerStateIndex { kIdle, kBusy, kDisabled, kDraining, kLost, kWorkerStateCount };

constexpr const char* kWorkerStateNames[] = {"idle", "busy", "disabled", "draining", "lost"};

constexpr core::JobState kJobStates[] = {core::JobState::kQueued, core::JobState::kRunning,
                                         core::JobState::kPaused, core::JobState::kSucceeded,
                                         core::JobState::kFailed, core::JobState::kCancelled};
// Tasks backing off are counted as queued, as `farmhand status` shows them.
constexpr core::TaskState kTaskStates[] = {core::TaskState::kWaiting,  core::TaskState::kQueued,
                                           core::TaskState::kRunning,  core::TaskState::kSucceeded,
                                           core::TaskState::kFailed,   core::TaskState::kDead,
                                           core::TaskState::kCancelled};

constexpr const char* kOutcomeNames[] = {"succeeded", "failed", "stale"};

// A render waits and runs for seconds to a day; the media lane for under a second.
const Histogram::BucketBoundaries& task_buckets() {
  static const Histogram::BucketBoundaries b{0.1, 0.5,  1,    5,    10,    30,    60,   300,
                                             600, 1800, 3600, 7200, 14400, 43200, 86400};
  return b;
}

// From a publish to its first thumbnail or proxy: the interactive lane's promise.
const Histogram::BucketBoundaries& publish_buckets() {
  static const Histogram::BucketBoundaries b{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600};
  return b;
}

// A commit is a few hundred microseconds; a flush waits for the disk.
const Histogram::BucketBoundaries& store_buckets() {
  static const Histogram::BucketBoundaries b{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  return b;
}

}  // namespace

void BoundedGauges::set(std::vector<std::pair<std::string, double>> values) {
  if (values.size() > cap_) {
    // The largest keep their own series (ties by name, so the choice is stable).
    std::sort(values.begin(), values.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    double rest = 0;
    for (size_t i = cap_ - 1; i < values.size(); ++i) rest += values[i].second;
    values.resize(cap_ - 1);
    values.emplace_back(kOther, rest);
  }
  std::map<std::string, double> wanted;
  for (auto& [name, value] : values) wanted[name] += value;
  for (auto it = live_.begin(); it != live_.end();) {
    if (wanted.count(it->first) != 0) {
      ++it;
      continue;
    }
    family_.Remove(it->second);
    it = live_.erase(it);
  }
  for (const auto& [name, value] : wanted) {
    auto it = live_.find(name);
    if (it == live_.end()) {
      it = live_.emplace(name, &family_.Add({{label_, name}})).first;
    }
    it->second->Set(value);
  }
}

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& reg = *registry_;

  jobs_ = &BuildGauge()
               .Name("farmhand_jobs")
               .Help(
                   "Jobs the broker holds, by state (finished ones until keep_finished forgets "
                   "them).")
               .Register(reg);
  for (core::JobState s : kJobStates) {
    jobs_by_state_.push_back(&jobs_->Add({{"state", std::string(core::job_state_name(s))}}));
  }
  tasks_ = &BuildGauge()
                .Name("farmhand_tasks")
                .Help(
                    "Tasks of the jobs the broker holds, by state (backing off counts as "
                    "queued).")
                .Register(reg);
  for (core::TaskState s : kTaskStates) {
    tasks_by_state_.push_back(&tasks_->Add({{"state", std::string(core::task_state_name(s))}}));
  }
  const std::string bounded =
      " At most 100 label values: the largest, the rest summed under "
      "\"other\".";
  pool_running_ = std::make_unique<BoundedGauges>(
      BuildGauge()
          .Name("farmhand_pool_running_tasks")
          .Help("Running tasks by their job's pool (\"any\": jobs without a pool), for every "
                "pool with unfinished jobs." +
                bounded)
          .Register(reg),
      "pool", kMaxLabelValues);
  project_running_ = std::make_unique<BoundedGauges>(
      BuildGauge()
          .Name("farmhand_project_running_tasks")
          .Help("Running tasks by their job's project (\"none\": jobs without a project), for "
                "every project with unfinished jobs." +
                bounded)
          .Register(reg),
      "project", kMaxLabelValues);
  auto& workers = BuildGauge()
                      .Name("farmhand_workers")
                      .Help(
                          "Worker sessions by state: idle, busy (running a task), disabled, "
                          "draining (by a wrangler), lost (silent or gone, not yet forgotten).")
                      .Register(reg);
  for (const char* name : kWorkerStateNames) {
    workers_by_state_.push_back(&workers.Add({{"state", name}}));
  }
  slots_ = &BuildGauge()
                .Name("farmhand_slots")
                .Help(
                    "Slots of live workers, reserved interactive slots included (disabled "
                    "and draining workers included).")
                .Register(reg)
                .Add({});
  slots_busy_ = &BuildGauge()
                     .Name("farmhand_slots_busy")
                     .Help("Slots of live workers running a task.")
                     .Register(reg)
                     .Add({});
  limit_capacity_ =
      std::make_unique<BoundedGauges>(BuildGauge()
                                          .Name("farmhand_limit_capacity")
                                          .Help("Tokens of each configured limit." + bounded)
                                          .Register(reg),
                                      "limit", kMaxLabelValues);
  limit_in_use_ = std::make_unique<BoundedGauges>(
      BuildGauge()
          .Name("farmhand_limit_in_use")
          .Help("Tokens of each limit that running tasks hold." + bounded)
          .Register(reg),
      "limit", kMaxLabelValues);
  limit_waiting_jobs_ = std::make_unique<BoundedGauges>(
      BuildGauge()
          .Name("farmhand_limit_waiting_jobs")
          .Help("Jobs parked until a token of the limit frees." + bounded)
          .Register(reg),
      "limit", kMaxLabelValues);

  dispatches_ = &BuildCounter()
                     .Name("farmhand_dispatches_total")
                     .Help("Tasks dispatched to workers (attempts started).")
                     .Register(reg)
                     .Add({});
  auto& results = BuildCounter()
                      .Name("farmhand_results_total")
                      .Help(
                          "Task results from workers by outcome: succeeded, failed, stale (for "
                          "a lease no longer current: ignored).")
                      .Register(reg);
  for (const char* name : kOutcomeNames) results_.push_back(&results.Add({{"outcome", name}}));

  auto& wait = BuildHistogram()
                   .Name("farmhand_task_wait_seconds")
                   .Help(
                       "From a job's submission to the dispatch of each of its tasks' first "
                       "attempt, by job kind (waits for dependencies included).")
                   .Register(reg);
  auto& run = BuildHistogram()
                  .Name("farmhand_task_run_seconds")
                  .Help(
                      "How long an attempt ran (as its worker measured it), by job kind; "
                      "accepted results only.")
                  .Register(reg);
  for (const JobKind& kind : job_kinds()) {
    const prometheus::Labels labels{{"kind", std::string(kind.name)}};
    wait_seconds_.push_back(&wait.Add(labels, task_buckets()));
    run_seconds_.push_back(&run.Add(labels, task_buckets()));
  }
  wait_seconds_.push_back(&wait.Add({{"kind", kOther}}, task_buckets()));
  run_seconds_.push_back(&run.Add({{"kind", kOther}}, task_buckets()));

  publishes_ = &BuildCounter()
                    .Name("farmhand_publishes_total")
                    .Help("Publish events accepted (committed).")
                    .Register(reg)
                    .Add({});
  first_output_seconds_ =
      &BuildHistogram()
           .Name("farmhand_publish_first_output_seconds")
           .Help(
               "From a publish event's arrival to the first task of its jobs succeeding (its "
               "first output). Publishes that make no job, or whose jobs never succeed, are "
               "not observed.")
           .Register(reg)
           .Add({}, publish_buckets());
  commit_seconds_ = &BuildHistogram()
                         .Name("farmhand_store_commit_seconds")
                         .Help("Writing a turn's changes in one SQLite transaction (no fsync).")
                         .Register(reg)
                         .Add({}, store_buckets());
  flush_seconds_ = &BuildHistogram()
                        .Name("farmhand_store_flush_seconds")
                        .Help(
                            "Making the turn's commits durable (the WAL's fsync) before "
                            "acknowledgements leave.")
                        .Register(reg)
                        .Add({}, store_buckets());
  auto& store_errors = BuildCounter()
                           .Name("farmhand_store_errors_total")
                           .Help(
                               "State store writes that failed: op=commit (the turn is undone "
                               "and writes are refused until the store writes again), op=flush "
                               "(farmhandd stops).")
                           .Register(reg);
  commit_errors_ = &store_errors.Add({{"op", "commit"}});
  flush_errors_ = &store_errors.Add({{"op", "flush"}});
  bad_messages_ = &BuildCounter()
                       .Name("farmhand_bad_messages_total")
                       .Help("Messages from clients and workers dropped as unusable.")
                       .Register(reg)
                       .Add({});
  http_requests_ = &BuildCounter()
                        .Name("farmhand_http_requests_total")
                        .Help(
                            "HTTP requests answered, by route template and status code. At "
                            "most 100 routes; the rest count under route=\"other\".")
                        .Register(reg);
}

std::string Metrics::text() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

void Metrics::count_http_request(const std::string& route, int status) {
  std::lock_guard lock(http_mutex_);
  std::string name = route;
  if (http_routes_.count(name) == 0) {
    if (http_routes_.size() < kMaxLabelValues) {
      http_routes_.insert(name);
    } else {
      name = kOther;
    }
  }
  if (status < 100 || status > 599) status = 0;  // "other"
  auto key = std::make_pair(std::move(name), status);
  auto it = http_counters_.find(key);
  if (it == http_counters_.end()) {
    const std::string code = status == 0 ? std::string(kOther) : std::to_string(status);
    Counter& counter = http_requests_->Add({{"route", key.first}, {"code", code}});
    it = http_counters_.emplace(std::move(key), &counter).first;
  }
  it->second->Increment();
}

size_t Metrics::kind_index(const JobKind* kind) const {
  const auto kinds = job_kinds();
  if (kind == nullptr || kind < kinds.data() || kind >= kinds.data() + kinds.size()) {
    return kinds.size();  // "other"
  }
  return static_cast<size_t>(kind - kinds.data());
}

void Metrics::task_dispatched(const JobKind* kind, std::optional<double> wait_s) {
  dispatches_->Increment();
  if (wait_s) wait_seconds_[kind_index(kind)]->Observe(std::max(0.0, *wait_s));
}

void Metrics::task_result(ResultOutcome outcome, const JobKind* kind, std::optional<double> run_s,
                          core::JobId job, int64_t now_unix_ms) {
  results_[static_cast<size_t>(outcome)]->Increment();
  if (outcome == ResultOutcome::kStale) return;
  if (run_s) run_seconds_[kind_index(kind)]->Observe(std::max(0.0, *run_s));
  if (outcome != ResultOutcome::kSucceeded || publish_of_job_.empty()) return;
  auto it = publish_of_job_.find(job);
  if (it == publish_of_job_.end()) return;
  auto pending = pending_publishes_.find(it->second);
  if (pending != pending_publishes_.end()) {
    const double seconds =
        static_cast<double>(now_unix_ms - pending->second.received_unix_ms) / 1000.0;
    first_output_seconds_->Observe(std::max(0.0, seconds));
    for (core::JobId other : pending->second.jobs) publish_of_job_.erase(other);
    pending_publishes_.erase(pending);
  } else {
    publish_of_job_.erase(it);
  }
}

void Metrics::publish_accepted(int64_t received_unix_ms, const std::vector<core::JobId>& jobs) {
  publishes_->Increment();
  if (jobs.empty()) return;
  if (pending_publishes_.size() >= kMaxPendingPublishes) {
    auto oldest = pending_publishes_.begin();
    for (core::JobId job : oldest->second.jobs) publish_of_job_.erase(job);
    pending_publishes_.erase(oldest);
  }
  const uint64_t id = next_publish_++;
  for (core::JobId job : jobs) publish_of_job_[job] = id;
  pending_publishes_.emplace(id, PendingPublish{received_unix_ms, jobs});
}

void Metrics::set_bad_messages(uint64_t total) {
  if (total > bad_messages_seen_) {
    bad_messages_->Increment(static_cast<double>(total - bad_messages_seen_));
  }
  bad_messages_seen_ = total;
}

void Metrics::refresh(const core::Scheduler& scheduler) {
  // Tallies the scheduler keeps as it goes: no job is walked.
  const core::FarmTotals totals = scheduler.totals();
  const auto& jobs = totals.jobs;
  const auto& tasks = totals.tasks;
  for (size_t i = 0; i < std::size(kJobStates); ++i) {
    jobs_by_state_[i]->Set(static_cast<double>(jobs[static_cast<size_t>(kJobStates[i])]));
  }
  for (size_t i = 0; i < std::size(kTaskStates); ++i) {
    uint64_t n = tasks[static_cast<size_t>(kTaskStates[i])];
    if (kTaskStates[i] == core::TaskState::kQueued) {
      n += tasks[static_cast<size_t>(core::TaskState::kBackoff)];
    }
    tasks_by_state_[i]->Set(static_cast<double>(n));
  }
  auto as_values = [](const std::vector<std::pair<std::string_view, uint64_t>>& counts,
                      const char* unnamed) {
    std::vector<std::pair<std::string, double>> values;
    values.reserve(counts.size());
    for (const auto& [name, n] : counts) {
      values.emplace_back(name.empty() ? std::string(unnamed) : std::string(name),
                          static_cast<double>(n));
    }
    return values;
  };
  pool_running_->set(as_values(totals.running_by_pool, "any"));
  project_running_->set(as_values(totals.running_by_project, "none"));

  const core::WorkerTally workers = scheduler.worker_tally();
  const uint64_t by_state[kWorkerStateCount] = {workers.idle, workers.busy, workers.disabled,
                                                workers.draining, workers.lost};
  for (size_t i = 0; i < kWorkerStateCount; ++i) {
    workers_by_state_[i]->Set(static_cast<double>(by_state[i]));
  }
  slots_->Set(static_cast<double>(workers.slots));
  slots_busy_->Set(static_cast<double>(workers.slots_busy));

  std::vector<std::pair<std::string, double>> capacity;
  std::vector<std::pair<std::string, double>> in_use;
  std::vector<std::pair<std::string, double>> waiting;
  for (const core::LimitView& limit : scheduler.limits()) {
    if (limit.capacity) capacity.emplace_back(limit.name, *limit.capacity);
    in_use.emplace_back(limit.name, limit.in_use);
    waiting.emplace_back(limit.name, static_cast<double>(limit.waiting_jobs));
  }
  limit_capacity_->set(std::move(capacity));
  limit_in_use_->set(std::move(in_use));
  limit_waiting_jobs_->set(std::move(waiting));
}

}  // namespace farmhand::daemon
