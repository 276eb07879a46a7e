// Scenario tests of the task-level actions: `farmhand retry|kill|skip JOB
// --tasks|--frames|--state` and `farmhand requeue JOB` (scheduler_tasks.cpp).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/daemon/scheduler_farm.h"
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "daemon/core/scheduler.h"

namespace farmhand::core {
namespace {

class TaskActionsTest : public ::testing::Test, public Farm {
 protected:
  void SetUp() override {
    options_.backoff_base = Millis(100);
    options_.backoff_max = Millis(100);
  }

  JobId submit_kept(std::string_view frame_text, uint32_t chunk = 1, const JobOptions& opts = {}) {
    JobId id = submit(frame_text, chunk, opts);
    specs_[id] = make_spec(frame_text, chunk, opts);
    return id;
  }

  // What the store would hold: the latest row of each task and each job's flags.
  void keep(const Outbox& out) {
    for (const TaskChange& c : out.tasks) rows_[{c.job, c.task}] = c;
    for (const JobChange& c : out.jobs) flags_[c.job] = c;
  }

  void keep_outbox() { keep(take_outbox()); }

  // The broker restarts on what the store holds.
  void restart() {
    keep_outbox();
    sched_ = std::make_unique<Scheduler>(options_);
    for (const auto& [id, spec] : specs_) {
      JobChange flags = flags_.count(id) ? flags_[id] : JobChange{id, false, false};
      ASSERT_TRUE(sched_->restore_job(id, spec, flags.paused, flags.cancelled).has_value());
    }
    for (const auto& [key, c] : rows_) {
      sched_->restore_task(c.job, c.task, c.state, c.attempts, c.budget_base, c.lease, c.worker,
                           c.error);
    }
    sched_->finish_restore(now_);
    fakes_.clear();
  }

  static TaskSelection tasks(std::string_view set) {
    TaskSelection s;
    s.tasks = frames(set);
    return s;
  }

  static TaskSelection frames_of(std::string_view set) {
    TaskSelection s;
    s.frames = frames(set);
    return s;
  }

  static TaskSelection in_state(TaskState state) {
    TaskSelection s;
    s.state = state;
    return s;
  }

  std::map<JobId, JobSpec> specs_;
  std::map<std::pair<JobId, TaskIndex>, TaskChange> rows_;
  std::map<JobId, JobChange> flags_;
};

// ------------------------------------------------------------------ kill

TEST_F(TaskActionsTest, KillRequeuesARunningTaskAsANewAttemptWithoutUsingItsBudget) {
  JobId job = submit("1-2", 1, with().max_attempts(1));
  WorkerId w = add_worker("w1", 2);
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 2u);
  (void)take_outbox();

  Result<uint64_t> killed =
      sched().kill_tasks(job, tasks("0"), false, "killed by farmhand kill", now());
  ASSERT_TRUE(killed.has_value()) << killed.error().reason;
  EXPECT_EQ(*killed, 1u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 1u);
  EXPECT_EQ(out.cancels[0].worker, w);
  EXPECT_EQ(out.cancels[0].ref.lease, first[0].lease);
  EXPECT_EQ(out.cancels[0].reason, "killed by farmhand kill");
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kQueued);
  EXPECT_EQ(out.tasks[0].attempts, 1u);  // attempt 1 keeps its number (and its log)
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(state(job, 1), TaskState::kRunning);
  EXPECT_EQ(sched().audit(), "");

  // The worker stops it and says so: that result is stale.
  EXPECT_EQ(fail(first[0], "cancelled"), ResultVerdict::kStale);
  Dispatch again = dispatch().at(0);
  EXPECT_EQ(again.task, 0u);
  EXPECT_EQ(again.attempt, 2u);
  // A budget of one attempt, and the kill used none of it: attempt 2 runs.
  EXPECT_EQ(succeed(again), ResultVerdict::kAccepted);
  EXPECT_EQ(succeed(first[1]), ResultVerdict::kAccepted);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(TaskActionsTest, KillWithFailCountsTheAttemptAsAFailedOne) {
  JobId one = submit("1", 1, with().max_attempts(1));
  JobId two = submit("1", 1, with().max_attempts(2));
  add_worker("w1", 2);
  ASSERT_EQ(dispatch().size(), 2u);

  ASSERT_EQ(sched().kill_tasks(one, {}, true, "killed by farmhand kill", now()).value(), 1u);
  EXPECT_EQ(state(one, 0), TaskState::kDead);
  EXPECT_EQ(task(one, 0).error, "killed by farmhand kill");
  EXPECT_EQ(view(one).state, JobState::kFailed);

  ASSERT_EQ(sched().kill_tasks(two, in_state(TaskState::kRunning), true, "killed", now()).value(),
            1u);
  EXPECT_EQ(state(two, 0), TaskState::kQueued);  // backing off, as after any failure
  EXPECT_TRUE(dispatch().empty());
  advance(Millis(200));
  Dispatch last = dispatch().at(0);
  EXPECT_EQ(last.attempt, 2u);
  EXPECT_EQ(fail(last), ResultVerdict::kAccepted);
  EXPECT_EQ(state(two, 0), TaskState::kDead);  // the kill used one of its two attempts
  // No worker is blocked for a kill: it was not the worker's fault.
  EXPECT_TRUE(sched().blocked_workers(one).empty());
}

TEST_F(TaskActionsTest, AKilledAttemptsLateResultIsStaleEvenAcrossABrokerRestart) {
  JobId job = submit_kept("1-2", 1);
  WorkerId w = add_worker("w1", 1);
  Dispatch d = dispatch().at(0);
  ASSERT_EQ(sched().kill_tasks(job, tasks("0"), false, "killed", now()).value(), 1u);
  // A lapsed lease's late success counts; a killed one's does not.
  EXPECT_EQ(sched().task_result(w, ref(d), true, Error{}, now()), ResultVerdict::kStale);
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  // The worker reconnects still running it (the cancel was lost): it is told to
  // stop, not handed the task again under the killed lease.
  keep_outbox();
  add_worker("w1", 1, {}, {d});
  Outbox out = take_outbox();
  keep(out);
  ASSERT_EQ(out.cancels.size(), 1u);
  EXPECT_EQ(out.cancels[0].ref.lease, d.lease);
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(sched().audit(), "");

  restart();
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(sched().task_result(w, ref(d), true, Error{}, now()), ResultVerdict::kStale);
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
}

TEST_F(TaskActionsTest, KillReleasesTheLimitTokensOfTheKilledTask) {
  sched().set_limit("nuke", 1);
  JobId job = submit("1-2", 1, with().limits({"nuke"}));
  add_worker("w1", 2);
  Dispatch d = dispatch().at(0);
  ASSERT_EQ(sched().limits().at(0).in_use, 1u);
  ASSERT_EQ(sched().kill_tasks(job, tasks(std::to_string(d.task)), false, "killed", now()).value(),
            1u);
  EXPECT_EQ(sched().limits().at(0).in_use, 0u);
  EXPECT_EQ(sched().audit(), "");
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);  // one token, one task again
  EXPECT_EQ(sched().limits().at(0).in_use, 1u);
}

TEST_F(TaskActionsTest, KillTakesOnlyRunningTasksAndNoMatchIsNotAnError) {
  JobId job = submit("1-3");
  add_worker("w1", 1);
  Dispatch d = dispatch().at(0);
  Result<uint64_t> none = sched().kill_tasks(job, tasks("1-2"), false, "killed", now());
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(*none, 0u);
  EXPECT_EQ(state(job, d.task), TaskState::kRunning);
  EXPECT_EQ(sched().kill_tasks(99, {}, false, "killed", now()).error().reason, "unknown job 99");
}

// ------------------------------------------------------------------ skip

TEST_F(TaskActionsTest, SkipReleasesFrameByFrameDependantsFrameByFrame) {
  JobId up = submit("1-4");
  JobId down = submit("1-4", 1, with().after_frames(up));
  ASSERT_EQ(states(down), std::vector<TaskState>(4, TaskState::kWaiting));

  ASSERT_EQ(sched().skip_tasks(up, tasks("1"), now()).value(), 1u);
  EXPECT_EQ(state(up, 1), TaskState::kSucceeded);
  EXPECT_EQ(task(up, 1).error, "skipped (farmhand skip)");
  EXPECT_EQ(states(down), (std::vector<TaskState>{TaskState::kWaiting, TaskState::kQueued,
                                                  TaskState::kWaiting, TaskState::kWaiting}));
  ASSERT_EQ(sched().skip_tasks(up, frames_of("3-4"), now()).value(), 2u);
  EXPECT_EQ(states(down), (std::vector<TaskState>{TaskState::kWaiting, TaskState::kQueued,
                                                  TaskState::kQueued, TaskState::kQueued}));
  EXPECT_EQ(view(up).state, JobState::kRunning);  // task 0 still has to run
  // Skipping what already succeeded changes nothing.
  EXPECT_EQ(sched().skip_tasks(up, tasks("1"), now()).value(), 0u);
  EXPECT_EQ(sched().audit(), "");
}

TEST_F(TaskActionsTest, SkipStopsARunningTaskAndAJobItFinishesReleasesItsDependants) {
  JobId up = submit("1-2");
  JobId down = submit("1-2", 1, with().after({up}));
  WorkerId w = add_worker("w1", 1);
  Dispatch d = dispatch().at(0);
  ASSERT_EQ(d.job, up);
  (void)take_outbox();
  ASSERT_EQ(sched().skip_tasks(up, {}, now()).value(), 2u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 1u);
  EXPECT_EQ(out.cancels[0].worker, w);
  EXPECT_EQ(view(up).state, JobState::kSucceeded);
  EXPECT_EQ(count(down, TaskState::kQueued), 2u);
  EXPECT_EQ(sched().task_result(w, ref(d), true, Error{}, now()), ResultVerdict::kStale);
  EXPECT_EQ(sched().audit(), "");
}

TEST_F(TaskActionsTest, SkippingTheDeadTasksOfAFailedJobMakesItSucceed) {
  JobId job = submit_kept("1-2", 1, with().max_attempts(1));
  add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  fail(ds[0]);
  succeed(ds[1]);
  ASSERT_EQ(view(job).state, JobState::kFailed);
  ASSERT_EQ(sched().skip_tasks(job, in_state(TaskState::kDead), now()).value(), 1u);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  restart();
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  EXPECT_EQ(task(job, ds[0].task).error, "skipped (farmhand skip)");
}

TEST_F(TaskActionsTest, SkipOfACancelledJobIsRefused) {
  JobId job = submit("1-2");
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  Result<uint64_t> r = sched().skip_tasks(job, {}, now());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason,
            fmt::format("job {} is cancelled; `farmhand requeue {}` runs it again", job, job));
}

// ------------------------------------------------------------------ retry

TEST_F(TaskActionsTest, RetryTasksRunsOnlyTheSelectedTasksAgain) {
  JobId job = submit("1-4", 1, with().max_attempts(1));
  add_worker("w1", 4);
  std::vector<Dispatch> ds = dispatch();
  succeed(ds[0]);
  fail(ds[1]);
  fail(ds[2]);
  succeed(ds[3]);
  ASSERT_EQ(view(job).state, JobState::kFailed);

  ASSERT_EQ(sched().retry_tasks(job, tasks("2"), now()).value(), 1u);
  EXPECT_EQ(states(job), (std::vector<TaskState>{TaskState::kSucceeded, TaskState::kDead,
                                                 TaskState::kQueued, TaskState::kSucceeded}));
  EXPECT_EQ(view(job).state, JobState::kRunning);
  // Named by index, a succeeded task runs again too (a bad frame re-rendered).
  ASSERT_EQ(sched().retry_tasks(job, tasks("0"), now()).value(), 1u);
  ASSERT_EQ(sched().retry_tasks(job, in_state(TaskState::kDead), now()).value(), 1u);
  std::vector<Dispatch> again = dispatch();
  EXPECT_EQ(tasks_of(again, job), (std::vector<TaskIndex>{0, 1, 2}));
  for (const Dispatch& d : again) {
    EXPECT_EQ(d.attempt, 2u);
    succeed(d);
  }
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  // Nothing matched: 0, not an error.
  EXPECT_EQ(sched().retry_tasks(job, in_state(TaskState::kDead), now()).value(), 0u);
}

TEST_F(TaskActionsTest, ASelectionNamingWhatTheJobLacksIsRefusedWithOneLine) {
  JobId job = submit("1001-1004");
  EXPECT_EQ(sched().retry_tasks(job, tasks("2-9"), now()).error().reason,
            fmt::format("task 9 out of range: job {} has 4 tasks (0-3)", job));
  EXPECT_EQ(sched().kill_tasks(job, tasks("-1"), false, "k", now()).error().reason,
            fmt::format("task -1 out of range: job {} has 4 tasks (0-3)", job));
  EXPECT_EQ(sched().skip_tasks(job, frames_of("1004-1005"), now()).error().reason,
            fmt::format("frame 1005 is not in job {} (frames 1001-1004)", job));
  EXPECT_EQ(sched().retry_tasks(job, in_state(TaskState::kRunning), now()).error().reason,
            "retry takes finished tasks (succeeded, failed, dead, cancelled), not running ones; "
            "`farmhand kill` restarts running tasks");
  EXPECT_EQ(sched().requeue(42, {}, now()).error().code, ErrorCode::kNotFound);
}

TEST_F(TaskActionsTest, FramesSelectTheTasksThatCoverThem) {
  JobId job = submit("1-10", 3);  // tasks: 1-3, 4-6, 7-9, 10
  ASSERT_EQ(sched().skip_tasks(job, frames_of("3-4,10"), now()).value(), 3u);
  EXPECT_EQ(states(job), (std::vector<TaskState>{TaskState::kSucceeded, TaskState::kSucceeded,
                                                 TaskState::kQueued, TaskState::kSucceeded}));
}

// ------------------------------------------------------------------ requeue

TEST_F(TaskActionsTest, RequeueRunsAFinishedJobAgainWithAttemptNumbersContinuing) {
  JobId job = submit_kept("1-3");
  add_worker("w1", 3);
  ASSERT_TRUE(run_to_completion());
  ASSERT_EQ(view(job).state, JobState::kSucceeded);
  keep_outbox();

  ASSERT_EQ(sched().requeue(job, {}, now()).value(), 3u);
  EXPECT_EQ(view(job).state, JobState::kQueued);
  Outbox out = take_outbox();
  keep(out);
  ASSERT_EQ(out.tasks.size(), 3u);
  EXPECT_EQ(out.tasks[0].attempts, 1u);
  EXPECT_EQ(out.tasks[0].budget_base, 1u);
  // A restart keeps the requeue.
  restart();
  EXPECT_EQ(count(job, TaskState::kQueued), 3u);
  add_worker("w1", 3);
  std::vector<Dispatch> again = dispatch();
  ASSERT_EQ(again.size(), 3u);
  for (const Dispatch& d : again) EXPECT_EQ(d.attempt, 2u);
  Result<uint64_t> refused = sched().requeue(job, {}, now());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().reason,
            fmt::format("job {} is running; use retry or kill for its tasks", job));
  for (const Dispatch& d : again) succeed(d);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  ASSERT_EQ(sched().requeue(job, tasks("1"), now()).value(), 1u);
  EXPECT_EQ(count(job, TaskState::kQueued), 1u);
  EXPECT_EQ(dispatch().at(0).attempt, 3u);
}

TEST_F(TaskActionsTest, RequeueOfPartOfACancelledJobUncancelsItAndTheRestStaysCancelled) {
  JobId job = submit_kept("1-3");
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  keep_outbox();
  ASSERT_EQ(sched().requeue(job, tasks("0"), now()).value(), 1u);
  JobView v = view(job);
  EXPECT_FALSE(v.cancelled);
  EXPECT_EQ(v.state, JobState::kRunning);
  EXPECT_EQ(states(job), (std::vector<TaskState>{TaskState::kQueued, TaskState::kCancelled,
                                                 TaskState::kCancelled}));
  restart();
  EXPECT_FALSE(view(job).cancelled);
  EXPECT_EQ(states(job), (std::vector<TaskState>{TaskState::kQueued, TaskState::kCancelled,
                                                 TaskState::kCancelled}));
  add_worker("w1", 1);
  succeed(dispatch().at(0));
  EXPECT_EQ(view(job).state, JobState::kFailed);  // the rest stayed cancelled
}

}  // namespace
}  // namespace farmhand::core
