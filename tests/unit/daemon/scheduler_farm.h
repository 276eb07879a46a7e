// The scheduler tests' farm: a scheduler, a clock and fake workers that play
// the workers' side of the conversation (scheduler_test.cpp,
// scheduler_controls_test.cpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/frame_set.h"
#include "common/result.h"
#include "daemon/core/scheduler.h"

namespace farmhand::core {
namespace {

using std::chrono::seconds;
using namespace std::chrono_literals;

// ------------------------------------------------------------------ helpers

inline common::FrameSet frames(std::string_view text) {
  Result<common::FrameSet> set = common::FrameSet::parse(text);
  if (!set) {
    ADD_FAILURE() << "FrameSet::parse('" << text << "') failed: " << set.error().reason;
    return common::FrameSet();
  }
  return *set;
}

inline std::vector<int64_t> frame_list(const common::FrameSet& set) {
  std::vector<int64_t> out;
  for (uint64_t i = 0; i < set.size(); ++i) out.push_back(set.frame_at(i));
  return out;
}

inline std::vector<int64_t> frame_list(std::string_view text) {
  return frame_list(frames(text));
}

inline size_t at(TaskState state) {
  return static_cast<size_t>(state);
}

inline TaskRef ref(const Dispatch& d) {
  return {d.job, d.task, d.lease};
}

inline bool is_final(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

inline std::vector<TaskIndex> tasks_of(const std::vector<Dispatch>& dispatches, JobId job) {
  std::vector<TaskIndex> out;
  for (const Dispatch& d : dispatches) {
    if (d.job == job) out.push_back(d.task);
  }
  return out;
}

inline std::vector<TaskIndex> iota_tasks(TaskIndex first, TaskIndex count) {
  std::vector<TaskIndex> out;
  for (TaskIndex t = first; t < first + count; ++t) out.push_back(t);
  return out;
}

// What a test says about a job beyond its frames and chunk: `with().pool("gpu").max_attempts(1)`.
struct JobOptions {
  JobOptions& priority(int32_t v) {
    spec_priority = v;
    return *this;
  }

  JobOptions& pool(std::string v) {
    spec_pool = std::move(v);
    return *this;
  }

  JobOptions& after(std::vector<JobId> v) {
    spec_after = std::move(v);
    return *this;
  }

  JobOptions& after_frames(JobId v) {
    spec_after_frames = v;
    return *this;
  }

  JobOptions& max_attempts(uint32_t v) {
    spec_max_attempts = v;
    return *this;
  }

  JobOptions& timeout(seconds v) {
    spec_timeout = v;
    return *this;
  }

  JobOptions& interactive() {
    spec_interactive = true;
    return *this;
  }

  JobOptions& limits(std::vector<std::string> v) {
    spec_limits = std::move(v);
    return *this;
  }

  JobOptions& max_running(uint32_t v) {
    spec_max_running = v;
    return *this;
  }

  JobOptions& project(std::string v) {
    spec_project = std::move(v);
    return *this;
  }

  // Each task's request: cores, and memory in bytes.
  JobOptions& needs(uint32_t cores, uint64_t memory) {
    spec_cores = cores;
    spec_memory = memory;
    return *this;
  }

  JobOptions& memory_retry_factor(double v) {
    spec_memory_retry_factor = v;
    return *this;
  }

  int32_t spec_priority = 0;
  std::string spec_pool;
  std::vector<JobId> spec_after;
  JobId spec_after_frames = 0;
  uint32_t spec_max_attempts = 0;
  seconds spec_timeout{0};
  bool spec_interactive = false;
  std::vector<std::string> spec_limits;
  uint32_t spec_max_running = 0;
  std::string spec_project;
  uint32_t spec_cores = 0;
  uint64_t spec_memory = 0;
  double spec_memory_retry_factor = 0;
};

inline JobOptions with() {
  return JobOptions{};
}

inline JobSpec make_spec(std::string_view frame_text, uint32_t chunk, const JobOptions& opts) {
  JobSpec spec;
  spec.kind = "render";
  spec.frames = frames(frame_text);
  spec.chunk = chunk;
  spec.priority = opts.spec_priority;
  spec.pool = opts.spec_pool;
  spec.after = opts.spec_after;
  spec.after_frames = opts.spec_after_frames;
  spec.max_attempts = opts.spec_max_attempts;
  spec.timeout = opts.spec_timeout;
  spec.interactive = opts.spec_interactive;
  spec.limits = opts.spec_limits;
  spec.max_running = opts.spec_max_running;
  spec.project = opts.spec_project;
  spec.cores = opts.spec_cores;
  spec.memory = opts.spec_memory;
  spec.memory_retry_factor = opts.spec_memory_retry_factor;
  return spec;
}

// A scheduler, a clock and the workers' side of the conversation. Fake workers
// remember what they were dispatched (as real ones do), heartbeat and renew their
// leases as time advances, and can be silenced or restarted. The scheduler is
// created on first use, so a test may change `options_` before that.
class Farm {
 public:
  explicit Farm(Scheduler::Options options = {}) : options_(options) {}

  Scheduler& sched() {
    if (!sched_) sched_ = std::make_unique<Scheduler>(options_);
    return *sched_;
  }

  Millis now() const { return now_; }

  JobId submit(std::string_view frame_text, uint32_t chunk = 1, const JobOptions& opts = {}) {
    Result<JobId> id = sched().submit(make_spec(frame_text, chunk, opts), now_);
    if (!id) {
      ADD_FAILURE() << "submit('" << frame_text << "') failed: " << id.error().reason;
      return 0;
    }
    return *id;
  }

  WorkerId add_worker(const std::string& name, uint32_t slots = 1,
                      std::vector<std::string> tags = {}, const std::vector<Dispatch>& running = {},
                      uint32_t interactive_slots = 0, const std::string& instance = {},
                      uint32_t cores = 0, uint64_t memory = 0) {
    WorkerSpec spec{name,   slots, std::move(tags), interactive_slots, instance, {}, cores,
                    memory, {}};
    Joined joined = join(std::move(spec), running);
    if (!joined.verdict.accepted) ADD_FAILURE() << "worker refused: " << joined.verdict.refusal;
    return joined.id;
  }

  struct Joined {
    WorkerId id = 0;
    WorkerReadyVerdict verdict;
  };

  // A worker process announces itself as a new session, still running `running`.
  // A refused session gets no fake: the shell forgets its connection.
  Joined join(WorkerSpec spec, const std::vector<Dispatch>& running = {}) {
    WorkerId id = next_worker_id_++;
    std::vector<TaskRef> refs;
    for (const Dispatch& d : running) refs.push_back(ref(d));
    WorkerSpec announced = spec;
    WorkerReadyVerdict verdict = sched().worker_ready(id, std::move(announced), refs, now_);
    if (!verdict.accepted) return {id, verdict};
    // A new session replaces the one it took the name from: that one is gone.
    for (auto it = fakes_.begin(); it != fakes_.end();) {
      bool replaced = it->second.name == verdict.name && !sched().knows_worker(it->first);
      it = replaced ? fakes_.erase(it) : std::next(it);
    }
    FakeWorker& fake = fakes_[id];
    fake.name = verdict.name;
    fake.slots = spec.slots;
    fake.tags = std::move(spec.tags);
    fake.interactive_slots = spec.interactive_slots;
    fake.instance = spec.instance;
    fake.cores = spec.cores;
    fake.memory = spec.memory;
    for (Dispatch d : running) {
      d.worker = id;
      fake.held.push_back(d);
    }
    return {id, verdict};
  }

  // The worker process restarted and reconnected as a new session, still running `still_running`.
  WorkerId restart_worker(WorkerId old, const std::vector<Dispatch>& still_running) {
    FakeWorker fake = fakes_.at(old);
    return add_worker(fake.name, fake.slots, fake.tags, still_running, fake.interactive_slots,
                      fake.instance, fake.cores, fake.memory);
  }

  std::vector<Dispatch> dispatch() {
    std::vector<Dispatch> out = sched().dispatch(now_);
    for (const Dispatch& d : out) {
      if (auto it = fakes_.find(d.worker); it != fakes_.end()) it->second.held.push_back(d);
    }
    return out;
  }

  ResultVerdict succeed(const Dispatch& d) {
    drop_held(d);
    return sched().task_result(d.worker, ref(d), true, Error{}, now_);
  }

  ResultVerdict fail(const Dispatch& d, const std::string& reason = "exit code 1") {
    drop_held(d);
    return sched().task_result(d.worker, ref(d), false, Error{ErrorCode::kCrashed, reason}, now_);
  }

  // The attempt ran out of memory at `peak` bytes.
  ResultVerdict fail_out_of_memory(const Dispatch& d, uint64_t peak) {
    drop_held(d);
    return sched().task_result(d.worker, ref(d), false,
                               Error{ErrorCode::kCrashed, "killed: out of memory"}, now_,
                               TaskOutcome{true, peak});
  }

  // Moves the clock on in heartbeat-sized steps: at each step every live fake worker
  // heartbeats and renews what it holds, then the scheduler ticks.
  void advance(Millis by) {
    const Millis target = now_ + by;
    const Millis step = std::max(Millis(1), options_.heartbeat_interval);
    do {
      now_ = std::min(target, now_ + step);
      for (auto& [id, fake] : fakes_) {
        if (fake.heartbeats) sched().worker_seen(id, now_);
        if (fake.renews) {
          for (const Dispatch& d : fake.held) (void)sched().renew_lease(id, ref(d), now_);
        }
      }
      sched().tick(now_);
    } while (now_ < target);
  }

  // The worker process hangs or its network drops: no heartbeats, no renewals.
  void silence(WorkerId id) {
    fakes_.at(id).heartbeats = false;
    fakes_.at(id).renews = false;
  }

  void stop_renewing(WorkerId id) { fakes_.at(id).renews = false; }

  const std::vector<Dispatch>& held(WorkerId id) { return fakes_.at(id).held; }

  // What a worker's process forgets (it died), without telling the scheduler.
  void forget_held(WorkerId id) { fakes_.at(id).held.clear(); }

  // Dispatches and succeeds everything, with time moving on, until every job is final.
  bool run_to_completion(int max_rounds = 5000) {
    for (int round = 0; round < max_rounds; ++round) {
      if (all_jobs_final()) return true;
      dispatch();
      for (auto& [id, fake] : fakes_) {
        std::vector<Dispatch> held = fake.held;
        for (const Dispatch& d : held) (void)succeed(d);
      }
      advance(options_.heartbeat_interval);
    }
    return all_jobs_final();
  }

  bool all_jobs_final() {
    for (JobId id : sched().job_ids()) {
      if (!is_final(view(id).state)) return false;
    }
    return true;
  }

  JobView view(JobId job) {
    std::optional<JobView> v = sched().job(job);
    if (!v) {
      ADD_FAILURE() << "no job " << job;
      return JobView{};
    }
    return *v;
  }

  uint64_t count(JobId job, TaskState state) { return view(job).counts[at(state)]; }

  TaskView task(JobId job, TaskIndex t) {
    std::vector<TaskView> v = sched().tasks(job, t, 1, std::nullopt);
    if (v.size() != 1) {
      ADD_FAILURE() << "no task " << t << " in job " << job;
      return TaskView{};
    }
    return v[0];
  }

  TaskState state(JobId job, TaskIndex t) { return task(job, t).state; }

  std::vector<TaskState> states(JobId job) {
    std::vector<TaskState> out;
    for (const TaskView& v : sched().tasks(job, 0, UINT32_MAX, std::nullopt)) {
      out.push_back(v.state);
    }
    return out;
  }

  std::vector<TaskIndex> tasks_in(JobId job, TaskState state) {
    std::vector<TaskIndex> out;
    for (const TaskView& v : sched().tasks(job, 0, UINT32_MAX, state)) out.push_back(v.task);
    return out;
  }

  // The token of the lease a worker session holds on the task, if any.
  std::optional<LeaseToken> live_lease(JobId job, TaskIndex t) {
    std::optional<LeaseToken> found;
    for (const WorkerView& w : sched().workers()) {
      for (const TaskRef& r : w.running) {
        if (r.job == job && r.task == t) {
          EXPECT_FALSE(found.has_value()) << "two leases on job " << job << " task " << t;
          found = r.lease;
        }
      }
    }
    return found;
  }

  Outbox take_outbox() { return sched().take_outbox(); }

 protected:
  struct FakeWorker {
    std::string name;
    uint32_t slots = 1;
    std::vector<std::string> tags;
    uint32_t interactive_slots = 0;
    std::string instance;
    uint32_t cores = 0;
    uint64_t memory = 0;
    bool heartbeats = true;
    bool renews = true;
    std::vector<Dispatch> held;
  };

  void drop_held(const Dispatch& d) {
    auto it = fakes_.find(d.worker);
    if (it == fakes_.end()) return;
    auto& held = it->second.held;
    held.erase(std::remove_if(held.begin(), held.end(),
                              [&](const Dispatch& h) {
                                return h.job == d.job && h.task == d.task && h.lease == d.lease;
                              }),
               held.end());
  }

  Scheduler::Options options_;
  std::unique_ptr<Scheduler> sched_;
  Millis now_{0};
  WorkerId next_worker_id_ = 1;
  std::map<WorkerId, FakeWorker> fakes_;
};

class SchedulerTest : public ::testing::Test, public Farm {};

}  // namespace
}  // namespace farmhand::core
