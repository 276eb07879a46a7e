// Metrics: the broker's Prometheus metrics (prometheus-cpp's core registry),
// served as text at /metrics by the HTTP front.
//
// The loop thread updates them: counters and histograms as things happen
// (a dispatch, a result, a commit), and the gauges (jobs and tasks by state,
// running tasks by pool and project, workers, slots, limits) in refresh(),
// which walks the scheduler's jobs, workers and limits and is called at most
// once a second (BrokerCore). Nothing here reads a store or blocks on I/O.
//
// Label values that clients choose (pools, projects, limits, HTTP routes) are
// bounded: at most kMaxLabelValues series per metric; a gauge keeps the
// largest values and sums the rest under "other", a counter gives the first
// kMaxLabelValues values seen their own series and counts the rest under
// "other". So a client inventing pools or projects cannot grow the output.
//
// Thread-safety: text() and count_http_request() may be called from any
// thread at any time; everything else is called from the loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "daemon/core/scheduler.h"

namespace farmhand::daemon {

struct JobKind;

// How a worker's result was taken.
enum class ResultOutcome { kSucceeded, kFailed, kStale };

// A gauge family whose label values are bounded (see the file comment).
class BoundedGauges {
 public:
  BoundedGauges(prometheus::Family<prometheus::Gauge>& family, std::string label, size_t cap)
      : family_(family), label_(std::move(label)), cap_(cap) {}

  // Replaces every series: one per value given (the cap - 1 largest when more
  // are given than the cap, the rest summed under "other"); series of values
  // no longer given are removed.
  void set(std::vector<std::pair<std::string, double>> values);

 private:
  prometheus::Family<prometheus::Gauge>& family_;
  std::string label_;
  size_t cap_;
  std::map<std::string, prometheus::Gauge*> live_;
};

class Metrics {
 public:
  // Series per metric for label values clients choose.
  static constexpr size_t kMaxLabelValues = 100;
  // Publish events waiting for their first output, at most (the oldest are
  // dropped: a publish whose jobs never succeed is not kept forever).
  static constexpr size_t kMaxPendingPublishes = 10'000;

  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The Prometheus text exposition format. Any thread.
  std::string text() const;

  // One HTTP request answered: `route` is the route's template ("/api/v1/jobs"),
  // `status` the HTTP status code. Any thread.
  void count_http_request(const std::string& route, int status);

  // ---- loop thread

  // A task was dispatched; `wait_s`: how long it waited (first attempts only).
  void task_dispatched(const JobKind* kind, std::optional<double> wait_s);
  // A worker's result was taken; `run_s`: how long the attempt ran, when accepted.
  // A success of a job a publish made ends that publish's wait for its first output.
  void task_result(ResultOutcome outcome, const JobKind* kind, std::optional<double> run_s,
                   core::JobId job, int64_t now_unix_ms);
  // A publish event was committed, with the jobs its rules made.
  void publish_accepted(int64_t received_unix_ms, const std::vector<core::JobId>& jobs);

  void store_committed(double seconds) { commit_seconds_->Observe(seconds); }

  void store_flushed(double seconds) { flush_seconds_->Observe(seconds); }

  void store_commit_failed() { commit_errors_->Increment(); }

  void store_flush_failed() { flush_errors_->Increment(); }

  // The bad messages counted so far (BadMessages::count()).
  void set_bad_messages(uint64_t total);

  // Walks the scheduler for the gauges. Costs a pass over jobs, workers and
  // limits: call it at most about once a second.
  void refresh(const core::Scheduler& scheduler);

 private:
  size_t kind_index(const JobKind* kind) const;

  std::shared_ptr<prometheus::Registry> registry_;

  prometheus::Family<prometheus::Gauge>* jobs_ = nullptr;
  prometheus::Family<prometheus::Gauge>* tasks_ = nullptr;
  std::vector<prometheus::Gauge*> jobs_by_state_;   // by core::JobState
  std::vector<prometheus::Gauge*> tasks_by_state_;  // by core::TaskState (no kBackoff)
  std::unique_ptr<BoundedGauges> pool_running_;
  std::unique_ptr<BoundedGauges> project_running_;
  std::vector<prometheus::Gauge*> workers_by_state_;  // by WorkerStateIndex (metrics.cpp)
  prometheus::Gauge* slots_ = nullptr;
  prometheus::Gauge* slots_busy_ = nullptr;
  std::unique_ptr<BoundedGauges> limit_capacity_;
  std::unique_ptr<BoundedGauges> limit_in_use_;
  std::unique_ptr<BoundedGauges> limit_waiting_jobs_;

  prometheus::Counter* dispatches_ = nullptr;
  std::vector<prometheus::Counter*> results_;  // by ResultOutcome
  // By job kind (job_kinds() order), plus one for a kind not in the table.
  std::vector<prometheus::Histogram*> wait_seconds_;
  std::vector<prometheus::Histogram*> run_seconds_;
  prometheus::Counter* publishes_ = nullptr;
  prometheus::Histogram* first_output_seconds_ = nullptr;
  prometheus::Histogram* commit_seconds_ = nullptr;
  prometheus::Histogram* flush_seconds_ = nullptr;
  prometheus::Counter* commit_errors_ = nullptr;
  prometheus::Counter* flush_errors_ = nullptr;
  prometheus::Counter* bad_messages_ = nullptr;
  uint64_t bad_messages_seen_ = 0;

  // Publishes waiting for their first output: by job, the publish's number;
  // by number (oldest first), when it was received and its jobs.
  struct PendingPublish {
    int64_t received_unix_ms = 0;
    std::vector<core::JobId> jobs;
  };

  std::unordered_map<core::JobId, uint64_t> publish_of_job_;
  std::map<uint64_t, PendingPublish> pending_publishes_;
  uint64_t next_publish_ = 0;

  mutable std::mutex http_mutex_;
  prometheus::Family<prometheus::Counter>* http_requests_ = nullptr;
  std::map<std::pair<std::string, int>, prometheus::Counter*> http_counters_;
  std::set<std::string> http_routes_;  // routes with series of their own
};

}  // namespace farmhand::daemon
