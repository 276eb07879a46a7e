#include "daemon/core/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/unit/daemon/scheduler_farm.h"
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::core {
namespace {

// ------------------------------------------------------------------ submit

TEST_F(SchedulerTest, SubmitAssignsIdsInSequenceAndQueuesEveryTask) {
  JobId a = submit("1-10", 3);
  JobId b = submit("1-5");
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  EXPECT_EQ(sched().last_job_id(), std::optional<JobId>(2));
  EXPECT_EQ(sched().job_ids(), (std::vector<JobId>{1, 2}));
  JobView v = view(a);
  EXPECT_EQ(v.state, JobState::kQueued);
  EXPECT_EQ(v.task_count, 4u);
  EXPECT_EQ(v.counts[at(TaskState::kQueued)], 4u);
  ASSERT_NE(sched().job_spec(a), nullptr);
  EXPECT_EQ(sched().job_spec(a)->max_attempts, options_.default_max_attempts);
}

// A job the store has not committed yet must not run: a crash would forget it
// and hand its id to the next job, and a late result would land there.
TEST_F(SchedulerTest, JobIsNotDispatchedUntilCommitted) {
  add_worker("w1", 4);
  auto id = sched().submit(make_spec("1-3", 1, {}), now(), /*durable=*/false);
  ASSERT_TRUE(id.has_value());
  EXPECT_TRUE(dispatch().empty());
  sched().committed(*id);
  EXPECT_EQ(dispatch().size(), 3u);
}

TEST_F(SchedulerTest, AbandonedJobIsForgottenAndItsIdReused) {
  JobId up = submit("1-4");
  auto id = sched().submit(make_spec("1-4", 1, with().after({up})), now(), /*durable=*/false);
  ASSERT_TRUE(id.has_value());
  sched().abandon(*id);
  EXPECT_FALSE(sched().job(*id).has_value());
  EXPECT_EQ(sched().job_ids(), (std::vector<JobId>{up}));
  // The upstream no longer names it as a dependant: finishing it touches nothing gone.
  add_worker("w1", 4);
  for (const Dispatch& d : dispatch()) succeed(d);
  EXPECT_EQ(view(up).state, JobState::kSucceeded);
  EXPECT_EQ(submit("1"), *id);
}

TEST_F(SchedulerTest, ForgetDropsOnlyFinishedJobsNothingDependsOnAndNeverTheNewest) {
  add_worker("w1", 8);
  JobId up = submit("1-2");
  JobId down = submit("1-2", 1, with().after({up}));
  JobId running = submit("1");
  JobId newest = submit("1");
  EXPECT_FALSE(sched().forget(up)) << "queued";
  std::vector<Dispatch> first = dispatch();
  std::vector<Dispatch> held;  // `running`'s task stays running
  for (const Dispatch& d : first) {
    if (d.job == running) {
      held.push_back(d);
    } else {
      succeed(d);
    }
  }
  for (const Dispatch& d : dispatch()) succeed(d);  // down, released by up
  ASSERT_EQ(view(up).state, JobState::kSucceeded);
  ASSERT_EQ(view(down).state, JobState::kSucceeded);
  ASSERT_EQ(view(newest).state, JobState::kSucceeded);
  ASSERT_EQ(held.size(), 1u);

  EXPECT_FALSE(sched().forget(up)) << "down depends on it";
  EXPECT_FALSE(sched().forget(running)) << "still running";
  EXPECT_FALSE(sched().forget(newest)) << "the newest id must survive a restart";
  EXPECT_FALSE(sched().forget(999));
  EXPECT_TRUE(sched().forget(down));
  EXPECT_TRUE(sched().forget(up)) << "its only dependant is gone";
  EXPECT_FALSE(sched().job(up).has_value());
  EXPECT_FALSE(sched().job(down).has_value());
  EXPECT_EQ(sched().job_ids(), (std::vector<JobId>{running, newest}));

  // Cancelling ends the running task at once (the worker is told to kill it);
  // its late report for a forgotten job is stale and changes nothing.
  ASSERT_TRUE(sched().cancel(running, now()).has_value());
  EXPECT_TRUE(sched().forget(running));
  EXPECT_EQ(succeed(held[0]), ResultVerdict::kStale);
  EXPECT_FALSE(sched().job(running).has_value());
  // Ids go on after the newest, never reusing a forgotten one.
  EXPECT_EQ(submit("1"), newest + 1);
}

TEST_F(SchedulerTest, SubmitRefusesInvalidSpecsWithAReason) {
  submit("1-3");

  struct Case {
    std::string name;
    JobSpec spec;
    ErrorCode code;
    std::string reason;
  };

  JobSpec base = make_spec("1-10", 1, {});
  std::vector<Case> cases;
  {
    JobSpec s = base;
    s.kind.clear();
    cases.push_back({"empty kind", s, ErrorCode::kInvalidArgument, "job kind is empty"});
  }
  {
    JobSpec s = base;
    s.frames = common::FrameSet();
    cases.push_back({"no frames", s, ErrorCode::kInvalidArgument, "empty frame set"});
  }
  {
    JobSpec s = base;
    s.chunk = 0;
    cases.push_back({"chunk 0", s, ErrorCode::kInvalidArgument, "chunk must be at least 1"});
  }
  {
    JobSpec s = base;
    s.max_attempts = 101;
    cases.push_back(
        {"attempts", s, ErrorCode::kInvalidArgument, "max attempts 101 over the limit of 100"});
  }
  {
    JobSpec s = base;
    s.after = {1, 9};
    cases.push_back({"unknown after", s, ErrorCode::kNotFound, "unknown job 9"});
  }
  {
    JobSpec s = base;
    s.after_frames = 7;
    cases.push_back({"unknown after-frames", s, ErrorCode::kNotFound, "unknown job 7"});
  }
  {
    JobSpec s = make_spec("1-10000001", 1, {});
    cases.push_back({"too many tasks", s, ErrorCode::kInvalidArgument,
                     "job of 10000001 tasks over the limit of 10000000; use a larger chunk"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<JobId> id = sched().submit(c.spec, now());
    ASSERT_FALSE(id.has_value());
    EXPECT_EQ(id.error().code, c.code);
    EXPECT_EQ(id.error().reason, c.reason);
  }
  // Nothing refused left a trace.
  EXPECT_EQ(sched().job_ids(), (std::vector<JobId>{1}));
  EXPECT_TRUE(take_outbox().tasks.empty());
}

TEST_F(SchedulerTest, JobOfAMillionTasksIsAcceptedAndDispatchesInIndexOrder) {
  JobId job = submit("1-1000000", 1);
  JobView v = view(job);
  EXPECT_EQ(v.task_count, 1'000'000u);
  EXPECT_EQ(v.counts[at(TaskState::kQueued)], 1'000'000u);
  EXPECT_EQ(frame_list(sched().task_frames(job, 999'999)), (std::vector<int64_t>{1'000'000}));
  // Submitting writes no task rows: untouched tasks are derived from the job row.
  EXPECT_TRUE(take_outbox().tasks.empty());

  add_worker("w1", 4);
  add_worker("w2", 4);
  std::vector<TaskIndex> order;
  for (int round = 0; round < 5; ++round) {
    std::vector<Dispatch> ds = dispatch();
    ASSERT_EQ(ds.size(), 8u);
    for (const Dispatch& d : ds) {
      order.push_back(d.task);
      EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
    }
  }
  EXPECT_EQ(order, iota_tasks(0, 40));
  v = view(job);
  EXPECT_EQ(v.counts[at(TaskState::kSucceeded)], 40u);
  EXPECT_EQ(v.counts[at(TaskState::kQueued)], 1'000'000u - 40u);
  EXPECT_EQ(v.state, JobState::kRunning);
  // Only the 40 touched tasks produced rows (running, then succeeded).
  EXPECT_EQ(take_outbox().tasks.size(), 80u);
}

// ------------------------------------------------------------------ chunking

TEST_F(SchedulerTest, TaskFramesSplitTheFrameSetIntoChunksInSetOrder) {
  struct Case {
    std::string frames;
    uint32_t chunk;
    std::vector<std::string> tasks;  // each task's frames, in fileseq syntax
  };

  const std::vector<Case> cases = {
      {"1-100",
       10,
       {"1-10", "11-20", "21-30", "31-40", "41-50", "51-60", "61-70", "71-80", "81-90", "91-100"}},
      {"1-100", 30, {"1-30", "31-60", "61-90", "91-100"}},
      {"1-10", 3, {"1-3", "4-6", "7-9", "10"}},
      {"1-10", 1, {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}},
      {"1-10", 10, {"1-10"}},
      {"1-10", 1000, {"1-10"}},
      {"1-100x3", 10, {"1-28x3", "31-58x3", "61-88x3", "91-100x3"}},
      {"1-100x3", 7, {"1-19x3", "22-40x3", "43-61x3", "64-82x3", "85-100x3"}},
      {"1-10y3", 2, {"2-3", "5-6", "8-9"}},
      {"-10--1", 4, {"-10--7", "-6--3", "-2--1"}},
      {"-5-5", 3, {"-5--3", "-2-0", "1-3", "4-5"}},
      {"10-1", 4, {"10-7", "6-3", "2-1"}},
      {"1-5,20-24", 3, {"1-3", "4-5,20", "21-23", "24"}},
      {"7", 5, {"7"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.frames + " chunk " + std::to_string(c.chunk));
    Scheduler sched(Scheduler::Options{});
    Result<JobId> job = sched.submit(make_spec(c.frames, c.chunk, {}), Millis(0));
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(sched.job(*job)->task_count, c.tasks.size());
    std::vector<int64_t> all;
    for (TaskIndex t = 0; t < c.tasks.size(); ++t) {
      SCOPED_TRACE("task " + std::to_string(t));
      std::vector<int64_t> got = frame_list(sched.task_frames(*job, t));
      EXPECT_EQ(got, frame_list(c.tasks[t]));
      // Every chunk is full except perhaps the last.
      if (t + 1 < c.tasks.size()) {
        EXPECT_EQ(got.size(), c.chunk);
      }
      all.insert(all.end(), got.begin(), got.end());
    }
    // Together the tasks are the job's frame set, each frame once, in order.
    EXPECT_EQ(all, frame_list(c.frames));
    EXPECT_TRUE(sched.task_frames(*job, static_cast<TaskIndex>(c.tasks.size())).empty());
  }
  EXPECT_TRUE(sched().task_frames(99, 0).empty());
}

// ------------------------------------------------------------------ priorities, pools, slots

TEST_F(SchedulerTest, HigherPriorityJobIsDispatchedFirst) {
  JobId low = submit("1-3", 1, with().priority(-5));
  JobId normal = submit("1-3", 1, {});
  JobId high = submit("1-3", 1, with().priority(10));
  WorkerId w = add_worker("w1", 1);
  std::vector<JobId> order;
  for (int i = 0; i < 9; ++i) {
    std::vector<Dispatch> ds = dispatch();
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].worker, w);
    order.push_back(ds[0].job);
    succeed(ds[0]);
  }
  EXPECT_EQ(order, (std::vector<JobId>{high, high, high, normal, normal, normal, low, low, low}));
}

TEST_F(SchedulerTest, HigherPriorityJobTakesEveryFreeSlotBeforeFairShare) {
  JobId normal = submit("1-10");
  JobId high = submit("1-10", 1, with().priority(1));
  add_worker("w1", 4);
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, high), iota_tasks(0, 4));
  EXPECT_TRUE(tasks_of(ds, normal).empty());
}

TEST_F(SchedulerTest, PoolJobOnlyGoesToWorkersTaggedWithThePool) {
  JobId gpu = submit("1-4", 1, with().pool("gpu"));
  add_worker("cpu1", 4);
  add_worker("cpu2", 4, {"linux"});
  EXPECT_TRUE(dispatch().empty());
  WorkerId g = add_worker("gpu1", 2, {"linux", "gpu"});
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  for (const Dispatch& d : ds) {
    EXPECT_EQ(d.job, gpu);
    EXPECT_EQ(d.worker, g);
  }
}

TEST_F(SchedulerTest, JobWithoutPoolGoesToAnyWorkerTaggedOrNot) {
  JobId any = submit("1-4");
  WorkerId plain = add_worker("plain", 2);
  WorkerId tagged = add_worker("tagged", 2, {"gpu"});
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 4u);
  std::map<WorkerId, int> per_worker;
  for (const Dispatch& d : ds) {
    EXPECT_EQ(d.job, any);
    ++per_worker[d.worker];
  }
  EXPECT_EQ(per_worker[plain], 2);
  EXPECT_EQ(per_worker[tagged], 2);
}

TEST_F(SchedulerTest, WorkerThatCannotServeTheTopJobTakesTheNextItCanServe) {
  JobId gpu = submit("1-2", 1, with().priority(9).pool("gpu"));
  JobId any = submit("1-2");
  add_worker("cpu", 2);
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, any), (std::vector<TaskIndex>{0, 1}));
  EXPECT_TRUE(tasks_of(ds, gpu).empty());
  EXPECT_EQ(count(gpu, TaskState::kQueued), 2u);
}

TEST_F(SchedulerTest, WorkerNeverRunsMoreTasksThanItsSlots) {
  for (uint32_t slots : {1u, 2u, 3u, 8u}) {
    SCOPED_TRACE("slots " + std::to_string(slots));
    Farm farm;
    JobId job = farm.submit("1-20");
    WorkerId w = farm.add_worker("w", slots);
    EXPECT_EQ(farm.dispatch().size(), slots);
    EXPECT_TRUE(farm.dispatch().empty());
    farm.advance(1s);
    EXPECT_TRUE(farm.dispatch().empty());
    EXPECT_EQ(farm.count(job, TaskState::kRunning), slots);
    // A freed slot is filled again, one for one.
    Dispatch first = farm.held(w).front();
    farm.succeed(first);
    std::vector<Dispatch> again = farm.dispatch();
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].task, slots);
    ASSERT_EQ(farm.sched().workers().size(), 1u);
    EXPECT_EQ(farm.sched().workers()[0].running.size(), slots);
  }
}

TEST_F(SchedulerTest, WorkerAnnouncingZeroSlotsGetsOne) {
  submit("1-5");
  add_worker("w", 0);
  EXPECT_EQ(dispatch().size(), 1u);
  EXPECT_TRUE(dispatch().empty());
}

// ------------------------------------------------------------------ lanes

TEST_F(SchedulerTest, InteractiveJobStartsWhileEveryGeneralSlotRunsBatchWork) {
  JobId render = submit("1-100", 1, with().priority(50));
  WorkerId w1 = add_worker("w1", 2, {}, {}, 1);
  WorkerId w2 = add_worker("w2", 2, {}, {}, 1);
  EXPECT_EQ(tasks_of(dispatch(), render).size(), 4u);
  advance(1s);
  JobId thumb = submit("1", 1, with().interactive());
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, thumb);
  EXPECT_TRUE(ds[0].worker == w1 || ds[0].worker == w2);
  EXPECT_EQ(count(render, TaskState::kRunning), 4u);
}

TEST_F(SchedulerTest, BatchWorkNeverTakesAReservedSlot) {
  JobId render = submit("1-10");
  add_worker("w", 1, {}, {}, 3);
  EXPECT_EQ(dispatch().size(), 1u);
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(count(render, TaskState::kRunning), 1u);
  EXPECT_EQ(count(render, TaskState::kQueued), 9u);
}

TEST_F(SchedulerTest, InteractiveWorkFillsReservedSlotsFirstThenGeneralOnes) {
  JobId media = submit("1-3", 1, with().interactive());
  add_worker("w", 1, {}, {}, 1);
  std::vector<Dispatch> first = dispatch();
  // Both slots serve the interactive job: reserved first, then the free general slot.
  EXPECT_EQ(tasks_of(first, media).size(), 2u);
  // A render arriving now waits for the general slot, not the reserved one.
  JobId render = submit("1-2");
  EXPECT_TRUE(dispatch().empty());
  succeed(first[0]);  // the reserved slot frees up: the interactive job's last task takes it
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, media);
  succeed(first[1]);  // the general slot frees up: the render gets it
  next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, render);
}

TEST_F(SchedulerTest, WorkerWithoutReservedSlotsRunsInteractiveWorkInGeneralSlots) {
  JobId media = submit("1-2", 1, with().interactive());
  add_worker("w", 1);
  EXPECT_EQ(tasks_of(dispatch(), media).size(), 1u);
  EXPECT_TRUE(dispatch().empty());
}

TEST_F(SchedulerTest, ReconnectingWorkerKeepsItsInteractiveTaskInTheReservedSlot) {
  submit("1-10");
  WorkerId w = add_worker("w", 1, {}, {}, 1);
  std::vector<Dispatch> batch = dispatch();
  ASSERT_EQ(batch.size(), 1u);
  JobId media = submit("1-2", 1, with().interactive());
  std::vector<Dispatch> interactive = dispatch();
  ASSERT_EQ(tasks_of(interactive, media).size(), 1u);
  std::vector<Dispatch> held_now = held(w);
  restart_worker(w, held_now);
  // Still one batch task in the general slot and one interactive in the reserved one.
  EXPECT_TRUE(dispatch().empty());
}

// ------------------------------------------------------------------ fair share

TEST_F(SchedulerTest, EqualPriorityJobsAlternateOnAWorkerWithTwoSlots) {
  JobId a = submit("1-10");
  JobId b = submit("1-10");
  add_worker("w", 2);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  EXPECT_EQ(ds[0].job, a);
  EXPECT_EQ(ds[1].job, b);
  // Whichever job frees a slot takes it back: each keeps one running.
  for (int i = 0; i < 6; ++i) {
    Dispatch done = ds[i % 2];
    succeed(done);
    std::vector<Dispatch> next = dispatch();
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(next[0].job, done.job);
    ds[i % 2] = next[0];
    EXPECT_EQ(count(a, TaskState::kRunning), 1u);
    EXPECT_EQ(count(b, TaskState::kRunning), 1u);
  }
  EXPECT_EQ(count(a, TaskState::kSucceeded), 3u);
  EXPECT_EQ(count(b, TaskState::kSucceeded), 3u);
}

TEST_F(SchedulerTest, EqualPriorityJobsSplitFourSlotsTwoAndTwo) {
  JobId a = submit("1-10");
  JobId b = submit("1-10");
  add_worker("w", 4);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 4u);
  EXPECT_EQ(tasks_of(ds, a), (std::vector<TaskIndex>{0, 1}));
  EXPECT_EQ(tasks_of(ds, b), (std::vector<TaskIndex>{0, 1}));
  std::vector<JobId> order;
  for (const Dispatch& d : ds) order.push_back(d.job);
  EXPECT_EQ(order, (std::vector<JobId>{a, b, a, b}));
}

TEST_F(SchedulerTest, FairShareCountsRunningTasksAcrossWorkers) {
  JobId a = submit("1-10");
  add_worker("w1", 3);
  EXPECT_EQ(dispatch().size(), 3u);  // all of a
  JobId b = submit("1-10");
  add_worker("w2", 3);
  // b has nothing running, a has three: b takes w2's slots until it catches up.
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, b), (std::vector<TaskIndex>{0, 1, 2}));
  EXPECT_TRUE(tasks_of(ds, a).empty());
}

// ------------------------------------------------------------------ attempts and backoff

TEST_F(SchedulerTest, TaskIsDeadAfterMaxAttemptsAndJobFailsShowingTheLastError) {
  options_.block_after_failures = 0;  // one worker fails it again and again
  for (uint32_t max_attempts : {1u, 2u, 3u, 5u}) {
    SCOPED_TRACE("max attempts " + std::to_string(max_attempts));
    Farm farm(options_);
    JobId job = farm.submit("1-2", 1, with().max_attempts(max_attempts));
    farm.add_worker("w", 1);
    std::set<LeaseToken> tokens;
    for (uint32_t attempt = 1; attempt <= max_attempts; ++attempt) {
      std::vector<Dispatch> ds = farm.dispatch();
      ASSERT_EQ(ds.size(), 1u);
      EXPECT_EQ(ds[0].task, 0u);
      EXPECT_EQ(ds[0].attempt, attempt);
      EXPECT_TRUE(tokens.insert(ds[0].lease).second) << "lease token reused";
      EXPECT_EQ(farm.fail(ds[0], "exit code " + std::to_string(attempt)), ResultVerdict::kAccepted);
      // Wait out any backoff (the cap is far above this job's delays).
      if (attempt < max_attempts) {
        EXPECT_EQ(farm.state(job, 0), TaskState::kQueued);
        farm.advance(Millis(300'000));
      }
    }
    EXPECT_EQ(farm.state(job, 0), TaskState::kDead);
    EXPECT_EQ(farm.task(job, 0).attempts, max_attempts);
    std::vector<TaskView> errors = farm.sched().last_errors(job);
    ASSERT_FALSE(errors.empty());
    EXPECT_EQ(errors[0].task, 0u);
    EXPECT_EQ(errors[0].state, TaskState::kDead);
    EXPECT_EQ(errors[0].error, "exit code " + std::to_string(max_attempts));
    // The other task still runs and succeeds; the job then fails.
    EXPECT_EQ(farm.view(job).state, JobState::kRunning);
    ASSERT_TRUE(farm.run_to_completion());
    EXPECT_EQ(farm.view(job).state, JobState::kFailed);
    EXPECT_EQ(farm.state(job, 1), TaskState::kSucceeded);
    Outbox out = farm.take_outbox();
    bool dead_notice = false;
    for (const Notice& n : out.notices) {
      if (n.kind == Notice::Kind::kTaskDead) {
        dead_notice = true;
        EXPECT_EQ(n.attempt, max_attempts);
      }
    }
    EXPECT_TRUE(dead_notice);
  }
}

TEST_F(SchedulerTest, JobWithoutMaxAttemptsUsesTheDefault) {
  options_.default_max_attempts = 2;
  JobId job = submit("1");
  add_worker("w");
  fail(dispatch().at(0));
  advance(Millis(10'000));
  fail(dispatch().at(0));
  EXPECT_EQ(state(job, 0), TaskState::kDead);
  EXPECT_EQ(view(job).state, JobState::kFailed);
}

TEST_F(SchedulerTest, FailureWithoutAReasonIsRecordedAsFailed) {
  JobId job = submit("1");
  add_worker("w");
  Dispatch d = dispatch().at(0);
  (void)sched().task_result(d.worker, ref(d), false, Error{}, now());
  EXPECT_EQ(task(job, 0).error, "failed");
}

TEST_F(SchedulerTest, LastErrorsListsTheMostRecentFailuresFirst) {
  JobId job = submit("1-12", 1, with().max_attempts(1));
  add_worker("w", 12);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 12u);
  for (const Dispatch& d : ds) fail(d, "missing frame " + std::to_string(d.task + 1));
  std::vector<TaskView> errors = sched().last_errors(job);
  ASSERT_EQ(errors.size(), 10u);  // only the last few are kept
  EXPECT_EQ(errors[0].task, 11u);
  EXPECT_EQ(errors[0].error, "missing frame 12");
  EXPECT_EQ(errors[9].task, 2u);
  EXPECT_EQ(view(job).state, JobState::kFailed);
}

TEST_F(SchedulerTest, FailedTaskIsNotRetriedBeforeHalfItsDelayAndIsRetriedByTheFullDelay) {
  options_.backoff_base = Millis(2'000);
  options_.backoff_max = Millis(300'000);
  JobId job = submit("1", 1, with().max_attempts(5));
  add_worker("w", 1);
  Dispatch first = dispatch().at(0);
  fail(first);
  EXPECT_EQ(state(job, 0), TaskState::kQueued);  // reported as queued while it backs off
  // Attempt 1 failed: the delay is somewhere in [base/2, base].
  advance(Millis(999));
  EXPECT_TRUE(dispatch().empty());
  advance(Millis(1'001));
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].attempt, 2u);
  EXPECT_NE(ds[0].lease, first.lease);
  // Attempt 2 failed: delay in [base, 2 base].
  fail(ds[0]);
  advance(Millis(1'999));
  EXPECT_TRUE(dispatch().empty());
  advance(Millis(2'001));
  ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].attempt, 3u);
}

// The delay after each failed attempt, found by stepping the clock 1 ms at a time.
std::vector<Millis> observed_backoffs(Scheduler::Options options, uint32_t failures) {
  options.block_after_failures = 0;  // one worker fails it again and again
  Farm farm(options);
  farm.submit("1", 1, with().max_attempts(failures + 1));
  farm.add_worker("w", 1);
  std::vector<Millis> delays;
  Dispatch d = farm.dispatch().at(0);
  for (uint32_t i = 0; i < failures; ++i) {
    farm.fail(d);
    Millis failed_at = farm.now();
    std::vector<Dispatch> ds;
    while (ds.empty()) {
      farm.advance(Millis(1));
      ds = farm.dispatch();
      if (farm.now() - failed_at > options.backoff_max * 2) {
        ADD_FAILURE() << "no retry after " << (farm.now() - failed_at).count() << " ms";
        return delays;
      }
    }
    delays.push_back(farm.now() - failed_at);
    d = ds[0];
  }
  return delays;
}

TEST_F(SchedulerTest, BackoffDelaysGrowPerAttemptAndAreCappedAtBackoffMax) {
  Scheduler::Options options;
  options.backoff_base = Millis(100);
  options.backoff_max = Millis(1'000);
  options.heartbeat_interval = Millis(1);
  for (uint64_t seed : {1u, 2u, 3u, 42u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    options.seed = seed;
    std::vector<Millis> delays = observed_backoffs(options, 8);
    ASSERT_EQ(delays.size(), 8u);
    // Equal jitter: attempt k waits between half and all of min(base * 2^(k-1), max).
    for (size_t k = 0; k < delays.size(); ++k) {
      SCOPED_TRACE("after attempt " + std::to_string(k + 1));
      int64_t full = std::min<int64_t>(100 << k, 1'000);
      EXPECT_GE(delays[k].count(), full / 2);
      EXPECT_LE(delays[k].count(), full);
      EXPECT_LE(delays[k], options.backoff_max);
      if (k > 0 && k < 4) {
        EXPECT_GE(delays[k], delays[k - 1]);
      }
    }
  }
}

TEST_F(SchedulerTest, BackoffIsDeterministicForAFixedSeed) {
  Scheduler::Options options;
  options.backoff_base = Millis(1'000);
  options.backoff_max = Millis(64'000);
  options.heartbeat_interval = Millis(1);
  options.seed = 7;
  std::vector<Millis> first = observed_backoffs(options, 6);
  std::vector<Millis> second = observed_backoffs(options, 6);
  EXPECT_EQ(first, second);
  options.seed = 8;
  EXPECT_NE(observed_backoffs(options, 6), first);
}

TEST_F(SchedulerTest, BackoffJitterSpreadsTheRetriesOfABurstOfFailures) {
  options_.block_after_failures = 0;  // one worker fails it again and again
  options_.backoff_base = Millis(10'000);
  options_.heartbeat_interval = Millis(10);
  JobId job = submit("1-20");
  add_worker("w", 20);
  for (const Dispatch& d : dispatch()) fail(d);
  std::set<Millis> retry_times;
  while (retry_times.size() < 20 && now() < Millis(20'000)) {
    advance(Millis(10));
    for (const Dispatch& d : dispatch()) {
      EXPECT_EQ(d.job, job);
      retry_times.insert(now());
    }
  }
  EXPECT_GT(retry_times.size(), 5u) << "retries came back in lockstep";
}

// ------------------------------------------------------------------ leases and timeouts

TEST_F(SchedulerTest, ExpiredLeaseRequeuesTaskAsNewAttempt) {
  JobId job = submit("1", 1, with().max_attempts(3));
  WorkerId w = add_worker("w1");
  Dispatch first = dispatch().at(0);
  EXPECT_EQ(first.attempt, 1u);
  stop_renewing(w);  // it still heartbeats: a hung task, not a lost worker
  advance(options_.lease_ttl - Millis(1));
  EXPECT_EQ(state(job, 0), TaskState::kRunning);
  take_outbox();
  advance(Millis(1));
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(task(job, 0).error, "lease expired on worker w1");
  Outbox out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kQueued);
  EXPECT_EQ(out.tasks[0].attempts, 1u);
  bool expired_notice = false;
  for (const Notice& n : out.notices) {
    if (n.kind == Notice::Kind::kLeaseExpired) {
      expired_notice = true;
      EXPECT_EQ(n.worker, "w1");
      EXPECT_EQ(n.attempt, 1u);
    }
  }
  EXPECT_TRUE(expired_notice);
  advance(options_.backoff_base);
  forget_held(w);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].task, 0u);
  EXPECT_EQ(ds[0].attempt, 2u);
  EXPECT_NE(ds[0].lease, first.lease);
}

TEST_F(SchedulerTest, RenewedLeaseOutlivesItsTtl) {
  JobId job = submit("1");
  add_worker("w1");
  Dispatch d = dispatch().at(0);
  advance(options_.lease_ttl * 10);
  EXPECT_EQ(state(job, 0), TaskState::kRunning);
  EXPECT_EQ(task(job, 0).attempts, 1u);
  EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, RenewalIsRefusedForAnOldTokenOrAnotherWorker) {
  submit("1");
  WorkerId w1 = add_worker("w1");
  WorkerId w2 = add_worker("w2");
  Dispatch d = dispatch().at(0);
  WorkerId other = d.worker == w1 ? w2 : w1;
  EXPECT_TRUE(sched().renew_lease(d.worker, ref(d), now()));
  EXPECT_FALSE(sched().renew_lease(other, ref(d), now()));
  EXPECT_FALSE(sched().renew_lease(d.worker, {d.job, d.task, d.lease + 1}, now()));
  EXPECT_FALSE(sched().renew_lease(d.worker, {d.job, d.task + 1, d.lease}, now()));
  EXPECT_FALSE(sched().renew_lease(d.worker, {d.job + 5, d.task, d.lease}, now()));
}

TEST_F(SchedulerTest, TaskPastTimeoutAndGraceIsFailedAndCancelledEvenWhileRenewing) {
  options_.timeout_grace = Millis(10'000);
  JobId job = submit("1", 1, with().max_attempts(2).timeout(seconds(5)));
  WorkerId w = add_worker("w1");
  Dispatch d = dispatch().at(0);
  take_outbox();
  advance(Millis(14'999));  // renewing all along
  EXPECT_EQ(state(job, 0), TaskState::kRunning);
  EXPECT_TRUE(take_outbox().cancels.empty());
  advance(Millis(1));
  EXPECT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(task(job, 0).error, "timed out after 5 s");
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 1u);
  EXPECT_EQ(out.cancels[0].worker, w);
  EXPECT_EQ(out.cancels[0].ref.job, job);
  EXPECT_EQ(out.cancels[0].ref.task, 0u);
  EXPECT_EQ(out.cancels[0].ref.lease, d.lease);
  EXPECT_EQ(out.cancels[0].reason, "timed out after 5 s");
  // The worker's own report of the timeout comes too late to count twice.
  EXPECT_EQ(fail(d, "timed out after 5 s"), ResultVerdict::kStale);
  EXPECT_EQ(task(job, 0).attempts, 1u);
  // The second attempt times out too: the task is dead.
  advance(options_.backoff_base);
  Dispatch second = dispatch().at(0);
  EXPECT_EQ(second.attempt, 2u);
  advance(Millis(15'000));
  EXPECT_EQ(state(job, 0), TaskState::kDead);
  EXPECT_EQ(view(job).state, JobState::kFailed);
  EXPECT_EQ(sched().last_errors(job).at(0).error, "timed out after 5 s");
}

TEST_F(SchedulerTest, TimeoutLongerThanTheLeaseTtlStillFiresWhileRenewing) {
  options_.lease_ttl = Millis(30'000);
  options_.timeout_grace = Millis(0);
  JobId job = submit("1", 1, with().timeout(seconds(100)));
  add_worker("w1");
  dispatch();
  advance(Millis(99'000));
  EXPECT_EQ(state(job, 0), TaskState::kRunning);
  advance(Millis(1'000));
  EXPECT_EQ(task(job, 0).error, "timed out after 100 s");
}

TEST_F(SchedulerTest, TaskWithinItsTimeoutIsNotCancelled) {
  JobId job = submit("1", 1, with().timeout(seconds(60)));
  add_worker("w1");
  Dispatch d = dispatch().at(0);
  advance(Millis(59'000));
  EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  EXPECT_TRUE(take_outbox().cancels.empty());
}

// ------------------------------------------------------------------ results

TEST_F(SchedulerTest, StaleResultAfterRedispatchIsRejectedAndChangesNothing) {
  JobId job = submit("1-2");
  WorkerId w1 = add_worker("w1");
  Dispatch old = dispatch().at(0);
  stop_renewing(w1);
  advance(options_.lease_ttl + options_.backoff_base);
  forget_held(w1);
  WorkerId w2 = add_worker("w2", 2);
  std::vector<Dispatch> ds = dispatch();
  // The requeued task 0 went out again (to one of the two).
  Dispatch current;
  for (const Dispatch& d : ds) {
    if (d.task == 0) current = d;
  }
  ASSERT_NE(current.lease, 0u);
  ASSERT_NE(current.lease, old.lease);
  take_outbox();
  JobView before = view(job);
  TaskView task_before = task(job, 0);
  for (bool succeeded : {true, false}) {
    EXPECT_EQ(sched().task_result(w1, ref(old), succeeded, Error{}, now()), ResultVerdict::kStale);
    EXPECT_EQ(sched().task_result(w2, ref(old), succeeded, Error{}, now()), ResultVerdict::kStale);
  }
  EXPECT_EQ(view(job).counts, before.counts);
  EXPECT_EQ(view(job).state, before.state);
  EXPECT_EQ(task(job, 0).state, task_before.state);
  EXPECT_EQ(task(job, 0).attempts, task_before.attempts);
  EXPECT_EQ(live_lease(job, 0), std::optional<LeaseToken>(current.lease));
  EXPECT_TRUE(take_outbox().empty());
  EXPECT_EQ(succeed(current), ResultVerdict::kAccepted);
}

TEST_F(SchedulerTest, LateSuccessWithAnOldTokenWhileTheTaskBacksOffIsAccepted) {
  // Documented: the work is done, and no newer attempt runs, so it counts.
  JobId job = submit("1", 1, with().max_attempts(3));
  WorkerId w = add_worker("w1");
  Dispatch d = dispatch().at(0);
  stop_renewing(w);
  advance(options_.lease_ttl);
  ASSERT_EQ(state(job, 0), TaskState::kQueued);
  ASSERT_FALSE(live_lease(job, 0).has_value());
  take_outbox();
  EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
  EXPECT_EQ(state(job, 0), TaskState::kSucceeded);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  Outbox out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kSucceeded);
  // The backoff timer that comes due later does not bring the task back.
  advance(options_.backoff_max);
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(state(job, 0), TaskState::kSucceeded);
}

TEST_F(SchedulerTest, LateFailureWithAnOldTokenWhileTheTaskBacksOffIsStale) {
  JobId job = submit("1", 1, with().max_attempts(3));
  WorkerId w = add_worker("w1");
  Dispatch d = dispatch().at(0);
  stop_renewing(w);
  advance(options_.lease_ttl);
  ASSERT_EQ(state(job, 0), TaskState::kQueued);
  EXPECT_EQ(fail(d, "late"), ResultVerdict::kStale);
  EXPECT_EQ(task(job, 0).attempts, 1u);
  EXPECT_EQ(task(job, 0).error, "lease expired on worker w1");
}

TEST_F(SchedulerTest, DuplicateOrUnknownResultsAreStale) {
  JobId job = submit("1-2");
  add_worker("w1");
  Dispatch d = dispatch().at(0);
  EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
  EXPECT_EQ(succeed(d), ResultVerdict::kStale);
  EXPECT_EQ(fail(d), ResultVerdict::kStale);
  EXPECT_EQ(state(job, 0), TaskState::kSucceeded);
  auto result = [&](TaskRef r) { return sched().task_result(d.worker, r, true, Error{}, now()); };
  EXPECT_EQ(result({job + 1, 0, d.lease}), ResultVerdict::kStale);
  EXPECT_EQ(result({job, 2, d.lease}), ResultVerdict::kStale);
  EXPECT_EQ(result({0, 0, 0}), ResultVerdict::kStale);
}

// ------------------------------------------------------------------ cancel, pause, retry

TEST_F(SchedulerTest, CancelCancelsQueuedTasksAndOrdersRunningOnesStopped) {
  JobId job = submit("1-10");
  WorkerId w = add_worker("w1", 3);
  std::vector<Dispatch> running = dispatch();
  ASSERT_EQ(running.size(), 3u);
  take_outbox();
  Result<uint64_t> changed = sched().cancel(job, now());
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(*changed, 10u);
  JobView v = view(job);
  EXPECT_EQ(v.state, JobState::kCancelled);
  EXPECT_TRUE(v.cancelled);
  EXPECT_EQ(v.counts[at(TaskState::kCancelled)], 10u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out.cancels[i].worker, w);
    EXPECT_EQ(out.cancels[i].ref.lease, running[i].lease);
    EXPECT_EQ(out.cancels[i].reason, "job cancelled");
  }
  ASSERT_EQ(out.jobs.size(), 1u);
  EXPECT_TRUE(out.jobs[0].cancelled);
  // Only tasks that were ever dispatched need a row; the job flag covers the rest.
  EXPECT_EQ(out.tasks.size(), 3u);
  // The slots are free and nothing of the job is handed out again.
  EXPECT_TRUE(sched().workers().at(0).running.empty());
  EXPECT_TRUE(dispatch().empty());
  // Results that arrive after the cancel are stale.
  EXPECT_EQ(succeed(running[0]), ResultVerdict::kStale);
  EXPECT_EQ(fail(running[1]), ResultVerdict::kStale);
  EXPECT_EQ(state(job, 0), TaskState::kCancelled);
  EXPECT_EQ(view(job).state, JobState::kCancelled);
}

TEST_F(SchedulerTest, CancelKeepsFinishedTasksAndIsIdempotent) {
  JobId job = submit("1-4");
  add_worker("w1", 1);
  succeed(dispatch().at(0));
  Result<uint64_t> changed = sched().cancel(job, now());
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(*changed, 3u);
  EXPECT_EQ(state(job, 0), TaskState::kSucceeded);
  EXPECT_EQ(sched().cancel(job, now()).value(), 0u);
  EXPECT_EQ(sched().cancel(99, now()).error().code, ErrorCode::kNotFound);
  JobId done = submit("1");
  succeed(dispatch().at(0));
  Result<uint64_t> late = sched().cancel(done, now());
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().reason, fmt::format("job {} already finished (succeeded)", done));
}

TEST_F(SchedulerTest, CancelledBackoffTaskIsNotBroughtBackByItsTimer) {
  JobId job = submit("1-2");
  add_worker("w1", 2);
  fail(dispatch().at(0));
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  advance(options_.backoff_max);
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(state(job, 0), TaskState::kCancelled);
}

TEST_F(SchedulerTest, PausedJobGetsNoDispatchWhileRunningTasksContinue) {
  JobId job = submit("1-6");
  JobId other = submit("1-6", 1, with().priority(-1));
  add_worker("w1", 2);
  std::vector<Dispatch> running = dispatch();
  ASSERT_EQ(tasks_of(running, job).size(), 2u);
  Result<uint64_t> paused = sched().pause(job, now());
  ASSERT_TRUE(paused.has_value());
  EXPECT_EQ(*paused, 4u);  // the queued tasks it holds back
  EXPECT_EQ(view(job).state, JobState::kPaused);
  EXPECT_TRUE(view(job).paused);
  EXPECT_EQ(sched().pause(job, now()).value(), 0u);
  // Running tasks finish normally; the freed slots go to the other job.
  EXPECT_EQ(succeed(running[0]), ResultVerdict::kAccepted);
  advance(Millis(60'000));
  EXPECT_EQ(state(job, 1), TaskState::kRunning);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, other);
  EXPECT_EQ(view(job).state, JobState::kPaused);
  EXPECT_EQ(succeed(running[1]), ResultVerdict::kAccepted);
  std::vector<Dispatch> more = dispatch();
  EXPECT_EQ(tasks_of(more, other).size(), 1u);
  EXPECT_TRUE(tasks_of(more, job).empty());
  EXPECT_EQ(count(job, TaskState::kQueued), 4u);
  // Resume: it dispatches again, ahead of the lower-priority job.
  Result<uint64_t> resumed = sched().resume(job, now());
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(*resumed, 4u);
  EXPECT_EQ(sched().resume(job, now()).value(), 0u);
  EXPECT_FALSE(view(job).paused);
  EXPECT_EQ(view(job).state, JobState::kRunning);
  succeed(ds[0]);
  EXPECT_EQ(tasks_of(dispatch(), job), (std::vector<TaskIndex>{2}));
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  Outbox out = take_outbox();
  std::vector<bool> paused_flags;
  for (const JobChange& c : out.jobs) paused_flags.push_back(c.paused);
  EXPECT_EQ(paused_flags, (std::vector<bool>{true, false}));
}

TEST_F(SchedulerTest, PausedJobWhoseLastTasksFinishSucceeds) {
  JobId job = submit("1-2");
  add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_TRUE(sched().pause(job, now()).has_value());
  for (const Dispatch& d : ds) succeed(d);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  EXPECT_FALSE(sched().pause(job, now()).has_value());
}

TEST_F(SchedulerTest, PausingAFinishedOrCancelledJobIsRefused) {
  JobId job = submit("1-2");
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  Result<uint64_t> r = sched().pause(job, now());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(sched().pause(77, now()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(sched().resume(77, now()).error().code, ErrorCode::kNotFound);
}

TEST_F(SchedulerTest, RetryRunsDeadTasksAgainAsTheirNextAttempts) {
  JobId job = submit("1-4", 1, with().max_attempts(1));
  add_worker("w1", 4);
  std::vector<Dispatch> ds = dispatch();
  fail(ds[1], "exit code 3");
  fail(ds[2], "exit code 4");
  succeed(ds[0]);
  succeed(ds[3]);
  ASSERT_EQ(view(job).state, JobState::kFailed);
  take_outbox();
  Result<uint64_t> retried = sched().retry(job, now());
  ASSERT_TRUE(retried.has_value());
  EXPECT_EQ(*retried, 2u);
  EXPECT_EQ(view(job).state, JobState::kRunning);
  EXPECT_EQ(states(job), (std::vector<TaskState>{TaskState::kSucceeded, TaskState::kQueued,
                                                 TaskState::kQueued, TaskState::kSucceeded}));
  EXPECT_EQ(task(job, 1).attempts, 1u);
  EXPECT_EQ(task(job, 1).error, "");
  EXPECT_TRUE(sched().last_errors(job).empty());
  Outbox out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 2u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kQueued);
  EXPECT_EQ(out.tasks[0].attempts, 1u);
  EXPECT_EQ(out.tasks[0].budget_base, 1u);
  std::vector<Dispatch> again = dispatch();
  EXPECT_EQ(tasks_of(again, job), (std::vector<TaskIndex>{1, 2}));
  for (const Dispatch& d : again) {
    EXPECT_EQ(d.attempt, 2u);  // attempt 1's log stays; a max of 1 attempt is granted again
    succeed(d);
  }
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  // Nothing to retry in a succeeded job: refused as pause and resume are.
  for (auto refused :
       {sched().retry(job, now()), sched().pause(job, now()), sched().resume(job, now())}) {
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().reason, fmt::format("job {} already finished (succeeded)", job));
  }
  EXPECT_EQ(sched().retry(99, now()).error().code, ErrorCode::kNotFound);
}

TEST_F(SchedulerTest, RetryOfACancelledJobRunsItsCancelledTasks) {
  JobId job = submit("1-4");
  add_worker("w1", 1);
  succeed(dispatch().at(0));
  dispatch();
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  forget_held(1);
  Result<uint64_t> retried = sched().retry(job, now());
  ASSERT_TRUE(retried.has_value());
  EXPECT_EQ(*retried, 3u);
  JobView v = view(job);
  EXPECT_FALSE(v.cancelled);
  EXPECT_EQ(v.state, JobState::kRunning);
  EXPECT_EQ(v.counts[at(TaskState::kQueued)], 3u);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, RetryBeforeAnOldBackoffTimerFiresStillBacksOffTheNewFailure) {
  // A task fails (backoff timer armed), the job is cancelled and retried, and the
  // first attempt of the fresh budget fails again: the retry waits out its own
  // delay, not the old one's.
  options_.backoff_base = Millis(10'000);
  options_.backoff_max = Millis(10'000);
  options_.heartbeat_interval = Millis(100);
  JobId job = submit("1", 1, with().max_attempts(5));
  add_worker("w1");
  fail(dispatch().at(0));  // old timer due in [5 s, 10 s]
  ASSERT_TRUE(sched().cancel(job, now()).has_value());
  advance(Millis(4'900));
  ASSERT_TRUE(sched().retry(job, now()).has_value());
  Dispatch fresh = dispatch().at(0);
  EXPECT_EQ(fresh.attempt, 2u);
  fail(fresh);
  Millis failed_at = now();
  while (now() < failed_at + Millis(4'999)) {
    advance(Millis(100));
    ASSERT_TRUE(dispatch().empty())
        << "retried " << (now() - failed_at).count() << " ms after the failure";
  }
  advance(Millis(5'100));
  EXPECT_EQ(dispatch().size(), 1u);
}

TEST_F(SchedulerTest, AdoptedTaskThatFailsAgainWaitsOutAFullBackoff) {
  // The lease lapses during a partition (backoff timer armed); the worker comes
  // back still running the task, which it keeps, and then fails it: the retry
  // waits out the new failure's delay, not the leftover timer's.
  options_.lease_ttl = Millis(8'000);
  options_.backoff_base = Millis(10'000);
  options_.backoff_max = Millis(10'000);
  options_.heartbeat_interval = Millis(100);
  JobId job = submit("1", 1, with().max_attempts(5));
  WorkerId w = add_worker("w1");
  Dispatch d = dispatch().at(0);
  silence(w);
  advance(Millis(8'000));  // expired: old timer due in [13 s, 18 s]
  ASSERT_EQ(state(job, 0), TaskState::kQueued);
  WorkerId back = restart_worker(w, {d});
  ASSERT_EQ(state(job, 0), TaskState::kRunning);
  advance(Millis(4'900));
  Dispatch resumed = d;
  resumed.worker = back;
  ASSERT_EQ(fail(resumed), ResultVerdict::kAccepted);
  Millis failed_at = now();
  while (now() < failed_at + Millis(4'999)) {
    advance(Millis(100));
    ASSERT_TRUE(dispatch().empty())
        << "retried " << (now() - failed_at).count() << " ms after the failure";
  }
  advance(Millis(5'100));
  EXPECT_EQ(dispatch().size(), 1u);
}

TEST_F(SchedulerTest, RetriedDeadTaskContinuesItsAttemptNumbersWithAFreshBudget) {
  options_.block_after_failures = 0;  // one worker fails it again and again
  // Logs are stored per attempt: a retry must not run "attempt 1" again over the
  // first attempt's log, yet it grants max_attempts more runs.
  JobId job = submit("1", 1, with().max_attempts(3));
  add_worker("w1");
  std::vector<uint32_t> attempts;
  auto fail_three_times = [&] {
    for (int i = 0; i < 3; ++i) {
      advance(options_.backoff_max);
      std::vector<Dispatch> ds = dispatch();
      ASSERT_EQ(ds.size(), 1u) << "after attempts " << ::testing::PrintToString(attempts);
      attempts.push_back(ds[0].attempt);
      fail(ds[0], fmt::format("exit code {}", ds[0].attempt));
    }
  };
  fail_three_times();
  ASSERT_EQ(state(job, 0), TaskState::kDead);
  take_outbox();
  ASSERT_EQ(sched().retry(job, now()).value(), 1u);
  EXPECT_EQ(task(job, 0).attempts, 3u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kQueued);
  EXPECT_EQ(out.tasks[0].attempts, 3u);
  EXPECT_EQ(out.tasks[0].budget_base, 3u);

  fail_three_times();
  EXPECT_EQ(attempts, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(state(job, 0), TaskState::kDead);
  EXPECT_EQ(task(job, 0).attempts, 6u);
  EXPECT_EQ(task(job, 0).error, "exit code 6");
  std::vector<std::pair<Notice::Kind, uint32_t>> failures;
  for (const Notice& n : take_outbox().notices) {
    if (n.kind == Notice::Kind::kTaskFailed || n.kind == Notice::Kind::kTaskDead) {
      failures.emplace_back(n.kind, n.attempt);
    }
  }
  EXPECT_EQ(failures,
            (std::vector<std::pair<Notice::Kind, uint32_t>>{{Notice::Kind::kTaskFailed, 4},
                                                            {Notice::Kind::kTaskFailed, 5},
                                                            {Notice::Kind::kTaskDead, 6}}));
}

// ------------------------------------------------------------------ --after

TEST_F(SchedulerTest, AfterJobWaitsUntilItsUpstreamSucceeded) {
  JobId up = submit("1-4", 2);
  JobId down = submit("1-6", 2, with().after({up}));
  EXPECT_EQ(count(down, TaskState::kWaiting), 3u);
  EXPECT_EQ(view(down).state, JobState::kQueued);
  add_worker("w1", 10);
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, up), (std::vector<TaskIndex>{0, 1}));
  EXPECT_TRUE(tasks_of(ds, down).empty());
  succeed(ds[0]);
  EXPECT_EQ(count(down, TaskState::kWaiting), 3u);
  EXPECT_TRUE(dispatch().empty());
  succeed(ds[1]);
  EXPECT_EQ(view(up).state, JobState::kSucceeded);
  EXPECT_EQ(count(down, TaskState::kQueued), 3u);
  EXPECT_EQ(tasks_of(dispatch(), down), (std::vector<TaskIndex>{0, 1, 2}));
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(down).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, AfterSeveralJobsWaitsForAllOfThem) {
  JobId a = submit("1-2");
  JobId b = submit("1-2", 1, with().pool("late"));
  JobId down = submit("1-3", 1, with().after({a, b, a}));
  add_worker("w1", 4);
  for (const Dispatch& d : dispatch()) succeed(d);
  EXPECT_EQ(view(a).state, JobState::kSucceeded);
  EXPECT_EQ(count(down, TaskState::kWaiting), 3u);
  add_worker("w2", 4, {"late"});
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(b).state, JobState::kSucceeded);
  EXPECT_EQ(view(down).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, DeadUpstreamTaskFailsEveryWaitingTaskOfAnAfterJob) {
  JobId up = submit("1-100", 10, with().max_attempts(1));
  JobId down = submit("1-20", 5, with().after({up}));
  add_worker("w1", 10);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 10u);
  fail(ds[3], "exit code 9");
  for (TaskIndex t = 0; t < 4; ++t) {
    EXPECT_EQ(state(down, t), TaskState::kFailed);
    EXPECT_EQ(task(down, t).error, fmt::format("upstream job {} frame 31 failed", up));
  }
  EXPECT_EQ(view(down).state, JobState::kFailed);
  // The upstream's other tasks are not affected.
  EXPECT_EQ(view(up).state, JobState::kRunning);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(up).state, JobState::kFailed);
  EXPECT_EQ(count(up, TaskState::kSucceeded), 9u);
}

TEST_F(SchedulerTest, CancelledUpstreamFailsAnAfterJob) {
  JobId up = submit("1-10");
  JobId down = submit("1-10", 5, with().after({up}));
  add_worker("w1", 2);
  succeed(dispatch().at(0));
  ASSERT_TRUE(sched().cancel(up, now()).has_value());
  EXPECT_EQ(count(down, TaskState::kFailed), 2u);
  EXPECT_EQ(task(down, 1).error, fmt::format("upstream job {} cancelled", up));
  EXPECT_EQ(view(down).state, JobState::kFailed);
  EXPECT_TRUE(run_to_completion());
}

TEST_F(SchedulerTest, AfterJobSubmittedOnAFinishedUpstreamStartsOrFailsAtOnce) {
  JobId ok = submit("1");
  JobId dead = submit("1-20", 10, with().max_attempts(1));
  JobId cancelled = submit("1");
  add_worker("w1", 4);
  for (const Dispatch& d : dispatch()) {
    if (d.job == ok || (d.job == dead && d.task == 0)) succeed(d);
    if (d.job == dead && d.task == 1) fail(d);
  }
  ASSERT_TRUE(sched().cancel(cancelled, now()).has_value());
  ASSERT_EQ(view(dead).state, JobState::kFailed);

  JobId after_ok = submit("1-3", 1, with().after({ok}));
  EXPECT_EQ(count(after_ok, TaskState::kQueued), 3u);
  JobId after_dead = submit("1-3", 1, with().after({ok, dead}));
  EXPECT_EQ(count(after_dead, TaskState::kFailed), 3u);
  EXPECT_EQ(task(after_dead, 2).error, fmt::format("upstream job {} frame 11 failed", dead));
  EXPECT_EQ(view(after_dead).state, JobState::kFailed);
  JobId after_cancelled = submit("1-3", 1, with().after({cancelled}));
  EXPECT_EQ(task(after_cancelled, 0).error, fmt::format("upstream job {} cancelled", cancelled));
  EXPECT_EQ(view(after_cancelled).state, JobState::kFailed);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(after_ok).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, AfterDependencyFailureCascadesDownAChain) {
  JobId a = submit("1-2", 1, with().max_attempts(1));
  JobId b = submit("1-2", 1, with().after({a}));
  JobId c = submit("1-2", 1, with().after({b}));
  JobId d = submit("1-2", 1, with().after_frames(b));
  add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  fail(ds[0]);
  EXPECT_EQ(view(b).state, JobState::kFailed);
  EXPECT_EQ(task(b, 1).error, fmt::format("upstream job {} frame 1 failed", a));
  EXPECT_EQ(view(c).state, JobState::kFailed);
  EXPECT_EQ(task(c, 0).error, fmt::format("upstream job {} frame 1 failed", b));
  EXPECT_EQ(view(d).state, JobState::kFailed);
  EXPECT_EQ(task(d, 1).error, fmt::format("upstream job {} frame 2 failed", b));
  ASSERT_TRUE(run_to_completion());
}

TEST_F(SchedulerTest, RetriedDownstreamWaitsAgainOnceItsUpstreamIsRetried) {
  JobId up = submit("1-2", 1, with().max_attempts(1));
  JobId down = submit("1-2", 1, with().after({up}));
  add_worker("w1", 2);
  for (const Dispatch& d : dispatch()) fail(d);
  ASSERT_EQ(view(down).state, JobState::kFailed);
  // Retrying the downstream alone: its upstream is still dead, so it fails again.
  ASSERT_TRUE(sched().retry(down, now()).has_value());
  EXPECT_EQ(count(down, TaskState::kFailed), 2u);
  EXPECT_EQ(view(down).state, JobState::kFailed);
  // Retry both: the downstream waits, then runs.
  ASSERT_TRUE(sched().retry(up, now()).has_value());
  ASSERT_TRUE(sched().retry(down, now()).has_value());
  EXPECT_EQ(count(down, TaskState::kWaiting), 2u);
  forget_held(1);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(up).state, JobState::kSucceeded);
  EXPECT_EQ(view(down).state, JobState::kSucceeded);
}

// ------------------------------------------------------------------ --after-frames

struct FrameDepCase {
  std::string up;
  uint32_t up_chunk;
  std::string down;
  uint32_t down_chunk;
};

std::string describe(const FrameDepCase& c) {
  return fmt::format("up {} chunk {} / down {} chunk {}", c.up, c.up_chunk, c.down, c.down_chunk);
}

const std::vector<FrameDepCase>& frame_dep_cases() {
  static const std::vector<FrameDepCase> cases = {
      {"1-100", 10, "1-100", 3},           // coarse upstream, fine downstream
      {"1-100", 3, "1-100", 10},           // and the other way round
      {"1-100", 7, "1-100", 7},            // same chunks
      {"1-100x2", 1, "1-100", 1},          // stepped upstream: even frames never wait
      {"1-100", 1, "1-100x2", 5},          // stepped downstream
      {"1-100x2", 7, "1-100x3", 4},        // both stepped, uneven chunks
      {"1-10,21-30,41-50", 4, "5-45", 6},  // interleaved ranges with gaps
      {"1-50", 10, "1-100", 10},           // frames 51-100 are absent upstream
      {"-20--1", 6, "-25-5", 4},           // negative frames
      {"100-1", 7, "1-100", 9},            // descending upstream
      {"1-100x3", 4, "1-100y3", 5},        // disjoint: nothing waits at all
      {"1-20:2", 3, "1-20", 4},            // staggered upstream order
  };
  return cases;
}

// Independently of the scheduler: which upstream tasks each downstream task needs.
std::vector<std::set<TaskIndex>> needed_upstream_tasks(const FrameDepCase& c) {
  std::vector<int64_t> up = frame_list(c.up);
  std::vector<int64_t> down = frame_list(c.down);
  std::map<int64_t, TaskIndex> up_task;
  for (size_t i = 0; i < up.size(); ++i) up_task[up[i]] = static_cast<TaskIndex>(i / c.up_chunk);
  std::vector<std::set<TaskIndex>> needs((down.size() + c.down_chunk - 1) / c.down_chunk);
  for (size_t i = 0; i < down.size(); ++i) {
    if (auto it = up_task.find(down[i]); it != up_task.end()) {
      needs[i / c.down_chunk].insert(it->second);
    }
  }
  return needs;
}

TEST_F(SchedulerTest, AfterFramesTaskWaitsOnlyForTheUpstreamTasksCoveringItsFrames) {
  for (const FrameDepCase& c : frame_dep_cases()) {
    SCOPED_TRACE(describe(c));
    Farm farm;
    // Pools keep the downstream undispatched so that its states can be watched.
    JobId up = farm.submit(c.up, c.up_chunk, with().pool("up"));
    JobId down = farm.submit(c.down, c.down_chunk, with().pool("down").after_frames(up));
    std::vector<std::set<TaskIndex>> needs = needed_upstream_tasks(c);
    ASSERT_EQ(farm.view(down).task_count, needs.size());
    uint64_t up_tasks = farm.view(up).task_count;
    farm.add_worker("up-worker", static_cast<uint32_t>(up_tasks), {"up"});
    std::vector<Dispatch> ds = farm.dispatch();
    ASSERT_EQ(ds.size(), up_tasks);
    std::mt19937 rng(static_cast<uint32_t>(c.up.size() * 31 + c.down_chunk));
    std::shuffle(ds.begin(), ds.end(), rng);
    std::set<TaskIndex> done;
    auto check = [&] {
      for (TaskIndex d = 0; d < needs.size(); ++d) {
        bool ready = std::includes(done.begin(), done.end(), needs[d].begin(), needs[d].end());
        ASSERT_EQ(farm.state(down, d), ready ? TaskState::kQueued : TaskState::kWaiting)
            << "downstream task " << d << " after " << done.size() << " upstream tasks";
      }
    };
    check();
    for (const Dispatch& d : ds) {
      ASSERT_EQ(farm.succeed(d), ResultVerdict::kAccepted);
      done.insert(d.task);
      check();
    }
    farm.add_worker("down-worker", 4, {"down"});
    ASSERT_TRUE(farm.run_to_completion());
    EXPECT_EQ(farm.view(up).state, JobState::kSucceeded);
    EXPECT_EQ(farm.view(down).state, JobState::kSucceeded);
  }
}

struct DeadUpstreamCase {
  FrameDepCase jobs;
  TaskIndex dead;                       // the upstream task that dies
  std::map<TaskIndex, int64_t> failed;  // downstream task -> the frame its reason names
};

TEST_F(SchedulerTest, DeadUpstreamTaskFailsExactlyTheFrameDependantsCoveringItsFrames) {
  const std::vector<DeadUpstreamCase> cases = {
      // Upstream task 3 is frames 10-12: downstream 1-10 needs 10, 11-20 needs 11 and 12.
      {{"1-100", 3, "1-100", 10}, 3, {{0, 10}, {1, 11}}},
      // Upstream task 1 is 11-20: downstream 10-12, 13-15, 16-18, 19-21.
      {{"1-100", 10, "1-100", 3}, 1, {{3, 11}, {4, 13}, {5, 16}, {6, 19}}},
      // Upstream task 0 is 1,3,5,7,9.
      {{"1-100x2", 5, "1-100", 4}, 0, {{0, 1}, {1, 5}, {2, 9}}},
      // Upstream task 2 is 9,10,21,22: downstream 8-10 and 20-22; 11-19 never waited.
      {{"1-10,21-30", 4, "5-25", 3}, 2, {{1, 9}, {5, 21}}},
      // Upstream task 1 is -14..-9.
      {{"-20--1", 6, "-25-5", 4}, 1, {{2, -14}, {3, -13}, {4, -9}}},
  };
  for (const DeadUpstreamCase& c : cases) {
    for (bool submit_down_first : {true, false}) {
      SCOPED_TRACE(describe(c.jobs) + (submit_down_first ? ", downstream submitted first"
                                                         : ", downstream submitted later"));
      Farm farm;
      const FrameDepCase& j = c.jobs;
      JobId up = farm.submit(j.up, j.up_chunk, with().pool("up").max_attempts(1));
      JobOptions down_options = with().pool("down").after_frames(up);
      JobId down = submit_down_first ? farm.submit(j.down, j.down_chunk, down_options) : 0;
      uint64_t up_tasks = farm.view(up).task_count;
      farm.add_worker("up-worker", static_cast<uint32_t>(up_tasks), {"up"});
      std::vector<Dispatch> ds = farm.dispatch();
      ASSERT_EQ(ds.size(), up_tasks);
      ASSERT_EQ(farm.fail(ds[c.dead], "decoder crashed"), ResultVerdict::kAccepted);
      ASSERT_EQ(farm.state(up, c.dead), TaskState::kDead);
      if (!submit_down_first) down = farm.submit(j.down, j.down_chunk, down_options);
      std::vector<TaskIndex> expected_failed;
      for (const auto& [t, frame] : c.failed) {
        expected_failed.push_back(t);
        EXPECT_EQ(farm.task(down, t).error,
                  fmt::format("upstream job {} frame {} failed", up, frame))
            << "downstream task " << t;
      }
      EXPECT_EQ(farm.tasks_in(down, TaskState::kFailed), expected_failed);
      // Everything else finishes: the upstream fails, the downstream fails with
      // exactly those tasks and runs all the others.
      for (const Dispatch& d : ds) {
        if (d.task != c.dead) farm.succeed(d);
      }
      EXPECT_TRUE(farm.tasks_in(down, TaskState::kWaiting).empty());
      farm.add_worker("down-worker", 4, {"down"});
      ASSERT_TRUE(farm.run_to_completion());
      EXPECT_EQ(farm.view(up).state, JobState::kFailed);
      EXPECT_EQ(farm.view(down).state, JobState::kFailed);
      EXPECT_EQ(farm.tasks_in(down, TaskState::kFailed), expected_failed);
      EXPECT_EQ(farm.count(down, TaskState::kSucceeded),
                farm.view(down).task_count - expected_failed.size());
    }
  }
}

TEST_F(SchedulerTest, CancelledUpstreamFailsOnlyFrameDependantsItNeverFinished) {
  JobId up = submit("1-10", 5, with().pool("up"));
  JobId down = submit("1-10", 2, with().pool("down").after_frames(up));
  add_worker("u", 1, {"up"});
  succeed(dispatch().at(0));  // frames 1-5 done
  EXPECT_EQ(tasks_in(down, TaskState::kQueued), (std::vector<TaskIndex>{0, 1}));
  ASSERT_TRUE(sched().cancel(up, now()).has_value());
  // 5-6 needs frame 6, which will never be rendered.
  EXPECT_EQ(tasks_in(down, TaskState::kFailed), (std::vector<TaskIndex>{2, 3, 4}));
  EXPECT_EQ(task(down, 2).error, fmt::format("upstream job {} cancelled", up));
  add_worker("d", 2, {"down"});
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(down).state, JobState::kFailed);
  EXPECT_EQ(count(down, TaskState::kSucceeded), 2u);
}

TEST_F(SchedulerTest, FrameDependantOfARetriedUpstreamWaitsAgainWhenRetried) {
  JobId up = submit("1-4", 2, with().max_attempts(1));
  JobId down = submit("1-4", 1, with().after_frames(up));
  add_worker("w1", 1);
  Dispatch first = dispatch().at(0);
  ASSERT_EQ(first.job, up);
  fail(first);
  EXPECT_EQ(tasks_in(down, TaskState::kFailed), (std::vector<TaskIndex>{0, 1}));
  ASSERT_TRUE(sched().retry(up, now()).has_value());
  ASSERT_TRUE(sched().retry(down, now()).has_value());
  EXPECT_EQ(tasks_in(down, TaskState::kWaiting), (std::vector<TaskIndex>{0, 1, 2, 3}));
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(up).state, JobState::kSucceeded);
  EXPECT_EQ(view(down).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, TaskWithBothDependenciesWaitsForBoth) {
  JobId whole = submit("1", 1, with().pool("a"));
  JobId frames_up = submit("1-4", 2, with().pool("b"));
  JobId down = submit("1-4", 2, with().after({whole}).after_frames(frames_up));
  add_worker("b", 2, {"b"});
  for (const Dispatch& d : dispatch()) succeed(d);
  EXPECT_EQ(count(down, TaskState::kWaiting), 2u);
  add_worker("a", 1, {"a"});
  succeed(dispatch().at(0));
  EXPECT_EQ(count(down, TaskState::kQueued), 2u);
  ASSERT_TRUE(run_to_completion());
}

// ------------------------------------------------------------------ worker sessions

TEST_F(SchedulerTest, RestartedWorkerKeepsTheTasksItReportsAndRequeuesTheRest) {
  JobId job = submit("1-5", 1, with().max_attempts(2));
  WorkerId old = add_worker("w1", 3);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 3u);
  take_outbox();
  WorkerId fresh = restart_worker(old, {ds[0], ds[2]});
  EXPECT_EQ(states(job),
            (std::vector<TaskState>{TaskState::kRunning, TaskState::kQueued, TaskState::kRunning,
                                    TaskState::kQueued, TaskState::kQueued}));
  EXPECT_EQ(task(job, 1).error, "worker w1 restarted and lost the task");
  EXPECT_EQ(task(job, 1).attempts, 1u);  // the lost run counts as an attempt
  // The kept tasks now belong to the new session, which may renew and finish them.
  EXPECT_EQ(live_lease(job, 0), std::optional<LeaseToken>(ds[0].lease));
  EXPECT_TRUE(sched().renew_lease(fresh, ref(ds[0]), now()));
  EXPECT_FALSE(sched().knows_worker(old));
  ASSERT_EQ(sched().workers().size(), 1u);
  EXPECT_EQ(sched().workers()[0].id, fresh);
  EXPECT_EQ(sched().workers()[0].running.size(), 2u);
  Dispatch kept = ds[2];
  kept.worker = fresh;
  EXPECT_EQ(succeed(kept), ResultVerdict::kAccepted);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, RestartedWorkerNeverRunsMoreThanItsSlots) {
  JobId job = submit("1-10");
  WorkerId old = add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  restart_worker(old, ds);
  // Both slots are still busy with the reported tasks: the old session, gone with
  // the old connection, must not take new work under the same name.
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(count(job, TaskState::kRunning), 2u);
  advance(Millis(5'000));
  EXPECT_TRUE(dispatch().empty());
}

TEST_F(SchedulerTest, WorkerReportingATaskNoLongerItsOwnIsToldToStop) {
  JobId job = submit("1-2");
  WorkerId w1 = add_worker("w1");
  Dispatch mine = dispatch().at(0);
  silence(w1);
  advance(options_.lease_ttl + options_.backoff_base);
  WorkerId w2 = add_worker("w2");
  Dispatch theirs = dispatch().at(0);
  ASSERT_EQ(theirs.task, mine.task);
  ASSERT_EQ(theirs.worker, w2);
  take_outbox();
  WorkerId back = restart_worker(w1, {mine});
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 1u);
  EXPECT_EQ(out.cancels[0].worker, back);
  EXPECT_EQ(out.cancels[0].ref.lease, mine.lease);
  EXPECT_EQ(out.cancels[0].reason, "task is no longer leased to this worker");
  EXPECT_EQ(live_lease(job, mine.task), std::optional<LeaseToken>(theirs.lease));
}

TEST_F(SchedulerTest, WorkerStillRunningARequeuedTaskAfterAPartitionKeepsIt) {
  // The task was requeued (lease lapsed) but not handed out again: the worker that
  // still runs it is allowed to finish rather than rerunning it elsewhere.
  JobId job = submit("1");
  WorkerId w1 = add_worker("w1");
  Dispatch d = dispatch().at(0);
  silence(w1);
  advance(options_.lease_ttl);
  ASSERT_EQ(state(job, 0), TaskState::kQueued);
  WorkerId back = restart_worker(w1, {d});
  EXPECT_EQ(state(job, 0), TaskState::kRunning);
  EXPECT_EQ(live_lease(job, 0), std::optional<LeaseToken>(d.lease));
  Dispatch resumed = d;
  resumed.worker = back;
  EXPECT_EQ(succeed(resumed), ResultVerdict::kAccepted);
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, SilentWorkerGetsNoNewWorkButItsLeasesStandUntilExpiry) {
  options_.heartbeat_interval = Millis(1'000);
  options_.heartbeat_liveness = 3;
  options_.lease_ttl = Millis(30'000);
  JobId job = submit("1-2");
  WorkerId quiet = add_worker("quiet", 3);
  ASSERT_EQ(dispatch().size(), 2u);
  silence(quiet);
  advance(Millis(3'000));
  EXPECT_TRUE(sched().workers().at(0).alive);
  advance(Millis(1));
  EXPECT_FALSE(sched().workers().at(0).alive);
  // It has a free slot, but new work does not go to it.
  JobId later = submit("1-2");
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(count(later, TaskState::kQueued), 2u);
  // Its leases stand...
  advance(Millis(25'000));
  EXPECT_EQ(count(job, TaskState::kRunning), 2u);
  // ...until they expire, 30 s after the dispatch.
  advance(Millis(2'000));
  EXPECT_EQ(count(job, TaskState::kQueued), 2u);
  EXPECT_EQ(task(job, 1).error, "lease expired on worker quiet");
  // Another worker picks up the work; the silent one, once heard from, does too.
  WorkerId other = add_worker("other", 1);
  advance(options_.backoff_base);
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].worker, other);
  sched().worker_seen(quiet, now());
  EXPECT_TRUE(sched().workers().at(0).alive);
  next = dispatch();
  ASSERT_EQ(next.size(), 3u);
  for (const Dispatch& d : next) EXPECT_EQ(d.worker, quiet);
}

TEST_F(SchedulerTest, LongSilentWorkerWithNothingLeasedIsForgotten) {
  WorkerId w = add_worker("w1");
  silence(w);
  advance(options_.heartbeat_interval * options_.heartbeat_liveness * 100 + Millis(1'000));
  EXPECT_FALSE(sched().knows_worker(w));
  EXPECT_TRUE(sched().workers().empty());
}

TEST_F(SchedulerTest, WorkersAreWatchedWithoutWalkingThemEveryTick) {
  // The scheduler walks its workers only when one may be due (a big farm has
  // thousands); one that joins later does not put off finding an earlier one
  // lost, and a lost one holding leases is forgotten once they end.
  options_.heartbeat_interval = Millis(1'000);
  options_.heartbeat_liveness = 3;
  options_.lease_ttl = Millis(10'000);
  JobId job = submit("1");
  WorkerId busy = add_worker("busy");
  ASSERT_EQ(dispatch().size(), 1u);
  silence(busy);
  advance(Millis(2'000));
  WorkerId late = add_worker("late");
  advance(Millis(1'000));
  EXPECT_TRUE(sched().workers().at(0).alive) << "3 s silent: not yet";
  advance(Millis(1));
  EXPECT_FALSE(sched().workers().at(0).alive) << "busy is lost when due, not a walk later";
  EXPECT_TRUE(sched().workers().at(1).alive);
  silence(late);
  advance(Millis(3'000));
  EXPECT_TRUE(sched().workers().at(1).alive);
  advance(Millis(1));
  EXPECT_FALSE(sched().workers().at(1).alive);
  for (int second = 0; second < 400; ++second) {
    if (std::optional<Millis> next = sched().next_deadline()) {
      ASSERT_GT(*next, now()) << "a deadline in the past would spin the loop";
    } else {
      EXPECT_TRUE(sched().workers().empty()) << "known workers always have a deadline";
    }
    advance(Millis(1'000));
  }
  EXPECT_EQ(count(job, TaskState::kQueued), 1u) << "its lease expired";
  EXPECT_FALSE(sched().knows_worker(busy)) << "forgotten once it held nothing";
  EXPECT_FALSE(sched().knows_worker(late));
}

TEST_F(SchedulerTest, WorkerGoneRequeuesItsTasksWithoutUsingAnAttempt) {
  JobId job = submit("1-3", 1, with().max_attempts(1));
  WorkerId w = add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  take_outbox();
  sched().worker_gone(w, now());
  EXPECT_FALSE(sched().knows_worker(w));
  EXPECT_EQ(count(job, TaskState::kQueued), 3u);
  EXPECT_EQ(task(job, 0).attempts, 0u);
  Outbox out = take_outbox();
  EXPECT_EQ(out.tasks.size(), 2u);
  // No backoff: the tasks go straight out again, as first attempts.
  forget_held(w);
  add_worker("w2", 3);
  std::vector<Dispatch> again = dispatch();
  ASSERT_EQ(again.size(), 3u);
  for (const Dispatch& d : again) EXPECT_EQ(d.attempt, 1u);
  EXPECT_EQ(succeed(ds[0]), ResultVerdict::kStale);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, WorkerNoticesSayWhyAWorkerWasLostAndWhenItIsBack) {
  WorkerId quiet = add_worker("quiet");
  WorkerId leaving = add_worker("leaving");
  silence(quiet);
  advance(options_.heartbeat_interval * options_.heartbeat_liveness + Millis(1));
  sched().worker_seen(quiet, now());
  sched().worker_gone(leaving, now());
  std::vector<std::string> seen;
  for (const Notice& n : take_outbox().notices) {
    if (n.kind == Notice::Kind::kWorkerJoined) {
      seen.push_back(fmt::format("joined {}{}", n.worker, n.again ? " again" : ""));
    } else if (n.kind == Notice::Kind::kWorkerLost) {
      seen.push_back(fmt::format("lost {} {}", n.worker, worker_lost_cause_name(n.lost_cause)));
      EXPECT_TRUE(n.reason.empty()) << "a worker's cause is not free text: " << n.reason;
    }
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"joined quiet", "joined leaving", "lost quiet silent",
                                            "joined quiet again", "lost leaving disconnected"}));
}

// ------------------------------------------------------------------ worker identity

// A render node's worker, named after its host as by default: clones share the name.
WorkerSpec render_node(const std::string& instance, const std::string& host, uint32_t slots = 1) {
  WorkerSpec spec;
  spec.name = "render";
  spec.slots = slots;
  spec.instance = instance;
  spec.host = host;
  return spec;
}

TEST_F(SchedulerTest, CloneUnderALiveWorkersNameIsRefusedAndTheLiveWorkerKeepsItsTasks) {
  JobId job = submit("1-4");
  Joined first = join(render_node("aaaa1111bbbb2222", "node-a", 2));
  ASSERT_TRUE(first.verdict.accepted);
  EXPECT_EQ(first.verdict.name, "render");
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  take_outbox();

  Joined clone = join(render_node("cccc3333dddd4444", "node-b", 2));
  EXPECT_FALSE(clone.verdict.accepted);
  EXPECT_EQ(clone.verdict.refusal,
            "worker name \"render\" is in use by a live worker (host node-a, instance aaaa1111…)");
  EXPECT_FALSE(sched().knows_worker(clone.id));
  // The live worker is untouched: the same session, its tasks still leased to it.
  EXPECT_TRUE(sched().knows_worker(first.id));
  ASSERT_EQ(sched().workers().size(), 1u);
  EXPECT_EQ(sched().workers()[0].spec.instance, "aaaa1111bbbb2222");
  for (const Dispatch& d : ds) EXPECT_EQ(live_lease(job, d.task), d.lease);
  EXPECT_TRUE(take_outbox().tasks.empty());

  // The clone asking again, as if with the first's leases, changes nothing either.
  Dispatch forged = ds[0];
  forged.lease ^= 1;
  EXPECT_FALSE(join(render_node("cccc3333dddd4444", "node-b", 2), {forged}).verdict.accepted);
  advance(options_.lease_ttl * 2);
  for (const Dispatch& d : ds) EXPECT_EQ(succeed(d), ResultVerdict::kAccepted);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  for (TaskIndex t = 0; t < 4; ++t) EXPECT_EQ(task(job, t).attempts, 1u) << "task " << t;
}

TEST_F(SchedulerTest, WorkerReconnectingWithItsInstanceReplacesItsSessionKeepingWhatItRuns) {
  JobId job = submit("1-2");
  Joined first = join(render_node("aaaa1111", "node-a", 2));
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  Joined again = join(render_node("aaaa1111", "node-a", 2), {ds[0]});
  ASSERT_TRUE(again.verdict.accepted) << again.verdict.refusal;
  EXPECT_EQ(again.verdict.name, "render");
  EXPECT_FALSE(sched().knows_worker(first.id));
  ASSERT_EQ(sched().workers().size(), 1u);
  EXPECT_EQ(live_lease(job, ds[0].task), ds[0].lease);
  EXPECT_FALSE(live_lease(job, ds[1].task).has_value());  // what it no longer runs goes back
  EXPECT_EQ(state(job, ds[1].task), TaskState::kQueued);
  Dispatch kept = ds[0];
  kept.worker = again.id;
  EXPECT_EQ(succeed(kept), ResultVerdict::kAccepted);
}

TEST_F(SchedulerTest, NewInstanceTakesTheNameOverFromAWorkerWhoseLivenessRanOut) {
  JobId job = submit("1");
  Joined old = join(render_node("aaaa1111", "node-a"));
  Dispatch d = dispatch().at(0);
  silence(old.id);
  advance(options_.heartbeat_interval * options_.heartbeat_liveness + Millis(1));
  ASSERT_FALSE(sched().workers().at(0).alive);

  Joined fresh = join(render_node("bbbb2222", "node-b"));
  ASSERT_TRUE(fresh.verdict.accepted) << fresh.verdict.refusal;
  EXPECT_EQ(fresh.verdict.name, "render");
  EXPECT_FALSE(sched().knows_worker(old.id));
  ASSERT_EQ(sched().workers().size(), 1u);
  EXPECT_EQ(sched().workers()[0].spec.instance, "bbbb2222");
  // The dead session's task goes back to the queue and on to the new worker.
  EXPECT_FALSE(live_lease(job, 0).has_value());
  advance(options_.backoff_max);
  Dispatch next = dispatch().at(0);
  EXPECT_EQ(next.worker, fresh.id);
  EXPECT_EQ(next.attempt, 2u);
  // The old process, back from its partition with its old lease, is now the clone.
  EXPECT_FALSE(join(render_node("aaaa1111", "node-a"), {d}).verdict.accepted);
  EXPECT_EQ(live_lease(job, 0), next.lease);
}

TEST_F(SchedulerTest, WithRenameDuplicatesClonesJoinUnderSuffixedNamesTheyKeepOnReconnect) {
  options_.rename_duplicates = true;
  JobId job = submit("1-3");
  Joined a = join(render_node("aaaa1111", "node-a"));
  Joined b = join(render_node("bbbb2222", "node-b"));
  Joined c = join(render_node("cccc3333", "node-c"));
  ASSERT_TRUE(a.verdict.accepted && b.verdict.accepted && c.verdict.accepted);
  EXPECT_EQ(a.verdict.name, "render");
  EXPECT_EQ(b.verdict.name, "render-2");
  EXPECT_EQ(c.verdict.name, "render-3");
  EXPECT_EQ(sched().worker_name(b.id), "render-2");
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 3u);  // each clone is a worker of its own
  auto on_b =
      std::find_if(ds.begin(), ds.end(), [&](const Dispatch& d) { return d.worker == b.id; });
  ASSERT_NE(on_b, ds.end());

  // The second clone reconnects asking for "render" again: it is the same process, so it
  // keeps the name it was given and its task, and the first is untouched.
  Joined back = join(render_node("bbbb2222", "node-b"), {*on_b});
  ASSERT_TRUE(back.verdict.accepted);
  EXPECT_EQ(back.verdict.name, "render-2");
  EXPECT_FALSE(sched().knows_worker(b.id));
  EXPECT_TRUE(sched().knows_worker(a.id));
  EXPECT_EQ(sched().workers().size(), 3u);
  EXPECT_EQ(live_lease(job, on_b->task), on_b->lease);
  for (const Dispatch& d : ds) EXPECT_TRUE(live_lease(job, d.task).has_value());
}

TEST_F(SchedulerTest, RestartedWorkerReportingALeaseFromBeforeItsRestartKeepsItAndItsResultCounts) {
  // The worker process restarted (a new instance) holding a result it had not had
  // acknowledged: it lists the lease in Ready and sends the result again. Whatever
  // became of its old session, the work is not run again.
  enum class OldSession { kAlive, kSilent, kGone };
  for (OldSession old_session : {OldSession::kAlive, OldSession::kSilent, OldSession::kGone}) {
    SCOPED_TRACE(fmt::format("old session {}", static_cast<int>(old_session)));
    Farm farm;
    JobId job = farm.submit("1", 1, with().max_attempts(1));
    Joined before = farm.join(render_node("aaaa1111", "node-a"));
    Dispatch d = farm.dispatch().at(0);
    if (old_session == OldSession::kSilent) {
      farm.silence(before.id);
      farm.advance(options_.heartbeat_interval * options_.heartbeat_liveness + Millis(1));
      ASSERT_FALSE(farm.sched().workers().at(0).alive);
    } else if (old_session == OldSession::kGone) {
      farm.sched().worker_gone(before.id, farm.now());
    }
    Joined after = farm.join(render_node("bbbb2222", "node-a"), {d});
    ASSERT_TRUE(after.verdict.accepted) << after.verdict.refusal;
    EXPECT_EQ(after.verdict.name, "render");
    EXPECT_EQ(farm.live_lease(job, 0), d.lease);
    EXPECT_TRUE(farm.dispatch().empty());
    Dispatch resent = d;
    resent.worker = after.id;
    EXPECT_EQ(farm.succeed(resent), ResultVerdict::kAccepted);
    EXPECT_EQ(farm.state(job, 0), TaskState::kSucceeded);
    EXPECT_EQ(farm.task(job, 0).attempts, 1u);
  }
}

// ------------------------------------------------------------------ restore

TEST_F(SchedulerTest, RestoreRebuildsCountsAndQueues) {
  const LeaseToken lease = 0xabc;
  ASSERT_TRUE(sched().restore_job(1, make_spec("1-10", 1, {}), false, false).has_value());
  sched().restore_task(1, 0, TaskState::kSucceeded, 1, 0, 0, "", "");
  sched().restore_task(1, 1, TaskState::kDead, 3, 0, 0, "", "exit code 2");
  sched().restore_task(1, 2, TaskState::kRunning, 1, 0, lease, "w1", "");
  sched().restore_task(1, 3, TaskState::kQueued, 1, 0, 0, "", "exit code 1");
  sched().restore_task(1, 99, TaskState::kQueued, 1, 0, 0, "", "");  // out of range: ignored
  sched().finish_restore(now());
  EXPECT_TRUE(take_outbox().empty());  // the store already has all of it
  JobView v = view(1);
  EXPECT_EQ(v.task_count, 10u);
  EXPECT_EQ(v.counts[at(TaskState::kSucceeded)], 1u);
  EXPECT_EQ(v.counts[at(TaskState::kDead)], 1u);
  EXPECT_EQ(v.counts[at(TaskState::kRunning)], 1u);
  EXPECT_EQ(v.counts[at(TaskState::kQueued)], 7u);
  EXPECT_EQ(v.state, JobState::kRunning);
  std::vector<TaskView> errors = sched().last_errors(1);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[1].error, "exit code 2");
  ASSERT_EQ(sched().running_tasks(1, 10).size(), 1u);
  EXPECT_EQ(sched().running_tasks(1, 10)[0].worker, "w1");
  // New submissions continue the id sequence.
  EXPECT_EQ(submit("1"), 2u);

  // Another worker gets the queued tasks, in order, never the finished or leased ones.
  add_worker("w2", 10);
  dispatch();
  EXPECT_EQ(count(1, TaskState::kRunning), 8u);
  EXPECT_EQ(tasks_in(1, TaskState::kRunning), (std::vector<TaskIndex>{2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(task(1, 3).attempts, 2u);
  // The worker that ran task 2 reconnects and claims it.
  WorkerId w1 = add_worker("w1", 1, {}, {Dispatch{0, 1, 2, lease, 1}});
  EXPECT_EQ(live_lease(1, 2), std::optional<LeaseToken>(lease));
  EXPECT_TRUE(sched().renew_lease(w1, {1, 2, lease}, now()));
  EXPECT_EQ(succeed(Dispatch{w1, 1, 2, lease, 1}), ResultVerdict::kAccepted);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(1).state, JobState::kFailed);  // task 1 stays dead
  EXPECT_EQ(count(1, TaskState::kSucceeded), 9u);
}

// The worker died while the broker was down (usually with it: local workers
// follow their broker): the broker's crash does not cost the task an attempt.
TEST_F(SchedulerTest, RestoreKeepsTheAttemptNumbersAndTheBudgetOfARetriedTask) {
  options_.block_after_failures = 0;  // one worker fails it again and again
  JobId job = submit("1", 1, with().max_attempts(3));
  add_worker("w1");
  for (int i = 0; i < 3; ++i) {
    advance(options_.backoff_max);
    fail(dispatch().at(0));
  }
  ASSERT_EQ(state(job, 0), TaskState::kDead);
  ASSERT_TRUE(sched().retry(job, now()).has_value());
  advance(options_.backoff_max);
  Dispatch fourth = dispatch().at(0);
  ASSERT_EQ(fourth.attempt, 4u);
  fail(fourth, "exit code 4");
  // The task's row as the store holds it: the last change written.
  std::optional<TaskChange> row;
  for (const TaskChange& c : take_outbox().tasks) row = c;
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->attempts, 4u);
  EXPECT_EQ(row->budget_base, 3u);

  Scheduler restarted(options_);
  ASSERT_TRUE(restarted.restore_job(job, make_spec("1", 1, with().max_attempts(3)), false, false)
                  .has_value());
  restarted.restore_task(job, 0, row->state, row->attempts, row->budget_base, row->lease,
                         row->worker, row->error);
  restarted.finish_restore(now());
  ASSERT_EQ(restarted.tasks(job, 0, 1, std::nullopt).at(0).attempts, 4u);
  WorkerSpec w1;
  w1.name = "w1";
  (void)restarted.worker_ready(1, w1, {}, now());
  // Attempts 5 and 6 are the rest of the budget the retry granted: 6 is the last.
  Millis t = now();
  for (uint32_t attempt : {5u, 6u}) {
    t += options_.backoff_max;  // past any backoff
    restarted.worker_seen(1, t);
    restarted.tick(t);
    std::vector<Dispatch> ds = restarted.dispatch(t);
    ASSERT_EQ(ds.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(ds[0].attempt, attempt);
    EXPECT_EQ(
        restarted.task_result(1, ref(ds[0]), false, Error{ErrorCode::kCrashed, "exit code 1"}, t),
        ResultVerdict::kAccepted);
  }
  TaskView after = restarted.tasks(job, 0, 1, std::nullopt).at(0);
  EXPECT_EQ(after.state, TaskState::kDead);
  EXPECT_EQ(after.attempts, 6u);
}

TEST_F(SchedulerTest, RestoredLeaseIsRequeuedWithoutPenaltyWhenItsWorkerReportsWithoutIt) {
  ASSERT_TRUE(sched().restore_job(4, make_spec("1-2", 1, {}), false, false).has_value());
  sched().restore_task(4, 0, TaskState::kRunning, 1, 0, 77, "w1", "");
  sched().restore_task(4, 1, TaskState::kRunning, 3, 0, 78, "w1", "");
  sched().finish_restore(now());
  add_worker("w1", 2);
  EXPECT_EQ(state(4, 0), TaskState::kQueued);
  EXPECT_EQ(task(4, 0).attempts, 0u);
  EXPECT_EQ(task(4, 0).error, "");
  EXPECT_EQ(state(4, 1), TaskState::kQueued);  // its last attempt is not used up
  EXPECT_EQ(task(4, 1).attempts, 2u);
  EXPECT_FALSE(live_lease(4, 0).has_value());
  EXPECT_EQ(sched().running_tasks(4, 10).size(), 0u);
}

// A Ready looks at the leases restored under its own name only (it used to
// walk every lease of the farm: quadratic when a whole farm reconnects).
TEST_F(SchedulerTest, AReturningWorkerSettlesOnlyItsOwnRestoredLeases) {
  ASSERT_TRUE(sched().restore_job(4, make_spec("1-4", 1, {}), false, false).has_value());
  sched().restore_task(4, 0, TaskState::kRunning, 1, 0, 70, "w1", "");
  sched().restore_task(4, 1, TaskState::kRunning, 1, 0, 71, "w1", "");
  sched().restore_task(4, 2, TaskState::kRunning, 1, 0, 72, "w2", "");
  sched().restore_task(4, 3, TaskState::kRunning, 1, 0, 73, "w1", "");
  sched().finish_restore(now());
  (void)sched().task_result(0, {4, 3, 73}, true, Error{}, now());  // a late result, before w1
  add_worker("w1", 2, {}, {Dispatch{0, 4, 0, 70, 1}});
  EXPECT_EQ(state(4, 0), TaskState::kRunning) << "the lease it still runs is claimed";
  EXPECT_EQ(state(4, 1), TaskState::kQueued) << "the lease it lost is requeued";
  EXPECT_EQ(state(4, 2), TaskState::kRunning) << "another worker's lease was touched";
  EXPECT_EQ(state(4, 3), TaskState::kSucceeded);
  // The same worker again (its process restarted once more) finds nothing restored left.
  add_worker("w1", 2);
  EXPECT_EQ(state(4, 0), TaskState::kQueued);
  EXPECT_EQ(task(4, 0).error, "worker w1 restarted and lost the task");
  add_worker("w2", 1);
  EXPECT_EQ(state(4, 2), TaskState::kQueued);
}

TEST_F(SchedulerTest, AReconnectingSessionSaysWhichSessionItReplaced) {
  WorkerId first = add_worker("w1", 1, {}, {}, 0, "instance-1");
  Joined again = join(WorkerSpec{"w1", 1, {}, 0, "instance-1", {}, {}, {}, {}});
  ASSERT_TRUE(again.verdict.accepted);
  EXPECT_EQ(again.verdict.replaced, std::vector<WorkerId>{first});
  EXPECT_FALSE(sched().knows_worker(first));
  Joined other = join(WorkerSpec{"w2", 1, {}, 0, "instance-2", {}, {}, {}, {}});
  EXPECT_TRUE(other.verdict.replaced.empty());
  Joined clone = join(WorkerSpec{"w2", 1, {}, 0, "instance-3", {}, {}, {}, {}});
  EXPECT_FALSE(clone.verdict.accepted);
  EXPECT_TRUE(clone.verdict.replaced.empty()) << "a refused clone replaced the live worker";
  EXPECT_TRUE(sched().knows_worker(other.id));
}

TEST_F(SchedulerTest, RestoredLeaseNobodyClaimsExpires) {
  ASSERT_TRUE(sched().restore_job(1, make_spec("1", 1, {}), false, false).has_value());
  sched().restore_task(1, 0, TaskState::kRunning, 1, 0, 77, "gone", "");
  sched().finish_restore(now());
  advance(options_.lease_ttl - Millis(1));
  EXPECT_EQ(state(1, 0), TaskState::kRunning);
  advance(Millis(1));
  EXPECT_EQ(state(1, 0), TaskState::kQueued);
  EXPECT_EQ(task(1, 0).error, "lease expired on worker gone");
}

TEST_F(SchedulerTest, RestoreKeepsJobFlagsAndDerivesDependencies) {
  // Job 1 has a dead task 0 (frames 1-5); job 2 depends frame by frame; job 3 on
  // the whole of job 4, which finished; job 5 is paused; job 6 was cancelled.
  ASSERT_TRUE(sched().restore_job(1, make_spec("1-10", 5, {}), false, false).has_value());
  sched().restore_task(1, 0, TaskState::kDead, 3, 0, 0, "", "exit code 1");
  ASSERT_TRUE(sched()
                  .restore_job(2, make_spec("1-10", 2, with().after_frames(1)), false, false)
                  .has_value());
  ASSERT_TRUE(sched().restore_job(4, make_spec("1", 1, {}), false, false).has_value());
  sched().restore_task(4, 0, TaskState::kSucceeded, 1, 0, 0, "", "");
  ASSERT_TRUE(
      sched().restore_job(5, make_spec("1-3", 1, with().after({4})), true, false).has_value());
  ASSERT_TRUE(sched().restore_job(6, make_spec("1-3", 1, {}), false, true).has_value());
  Result<void> twice = sched().restore_job(6, make_spec("1", 1, {}), false, false);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, ErrorCode::kCorrupt);
  sched().finish_restore(now());
  EXPECT_TRUE(take_outbox().empty());

  EXPECT_EQ(tasks_in(2, TaskState::kFailed), (std::vector<TaskIndex>{0, 1, 2}));
  EXPECT_EQ(task(2, 2).error, "upstream job 1 frame 5 failed");
  EXPECT_EQ(tasks_in(2, TaskState::kWaiting), (std::vector<TaskIndex>{3, 4}));
  EXPECT_EQ(view(4).state, JobState::kSucceeded);
  EXPECT_EQ(view(5).state, JobState::kPaused);
  EXPECT_EQ(count(5, TaskState::kQueued), 3u);
  EXPECT_EQ(view(6).state, JobState::kCancelled);
  EXPECT_EQ(count(6, TaskState::kCancelled), 3u);

  add_worker("w", 4);
  std::vector<Dispatch> ds = dispatch();
  for (const Dispatch& d : ds) EXPECT_EQ(d.job, 1u);
  ASSERT_TRUE(sched().resume(5, now()).has_value());
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(2).state, JobState::kFailed);
  EXPECT_EQ(count(2, TaskState::kSucceeded), 2u);
  EXPECT_EQ(view(5).state, JobState::kSucceeded);
}

TEST_F(SchedulerTest, DispatchIsHeldUntilWorkersCouldReportAfterARestart) {
  ASSERT_TRUE(sched().restore_job(1, make_spec("1-2", 1, {}), false, false).has_value());
  sched().finish_restore(now());
  sched().hold_dispatch_until(now() + Millis(2'000));
  EXPECT_EQ(sched().next_deadline().value_or(Millis(-1)), now() + Millis(2'000));
  add_worker("w", 2);
  EXPECT_TRUE(dispatch().empty());
  advance(Millis(1'999));
  EXPECT_TRUE(dispatch().empty());
  advance(Millis(1));
  EXPECT_EQ(dispatch().size(), 2u);
}

// ------------------------------------------------------------------ outbox

TEST_F(SchedulerTest, OutboxRecordsDispatchSuccessAndFailureForThePersistence) {
  JobId job = submit("1-100", 10, with().max_attempts(2));
  EXPECT_TRUE(take_outbox().tasks.empty());
  add_worker("w1", 2);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const TaskChange& c = out.tasks[i];
    EXPECT_EQ(c.job, job);
    EXPECT_EQ(c.task, ds[i].task);
    EXPECT_EQ(c.state, TaskState::kRunning);
    EXPECT_EQ(c.attempts, 1u);
    EXPECT_EQ(c.lease, ds[i].lease);
    EXPECT_EQ(c.worker, "w1");
  }

  succeed(ds[0]);
  out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].task, ds[0].task);
  EXPECT_EQ(out.tasks[0].state, TaskState::kSucceeded);
  EXPECT_EQ(out.tasks[0].lease, 0u);

  fail(ds[1], "missing frame 15");
  out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kQueued);  // backoff is stored as queued
  EXPECT_EQ(out.tasks[0].attempts, 1u);
  EXPECT_EQ(out.tasks[0].error, "missing frame 15");
  EXPECT_EQ(out.tasks[0].worker, "");
  ASSERT_EQ(out.notices.size(), 1u);
  EXPECT_EQ(out.notices[0].kind, Notice::Kind::kTaskFailed);

  // The backoff ending and the next dispatch: one row, for the dispatch.
  advance(options_.backoff_base);
  take_outbox();
  std::vector<Dispatch> retry = dispatch();
  out = take_outbox();
  ASSERT_EQ(out.tasks.size(), retry.size());
  for (const TaskChange& c : out.tasks) EXPECT_EQ(c.state, TaskState::kRunning);

  Dispatch second = retry.at(0).task == ds[1].task ? retry.at(0) : retry.at(1);
  fail(second, "missing frame 15");
  out = take_outbox();
  ASSERT_EQ(out.tasks.size(), 1u);
  EXPECT_EQ(out.tasks[0].state, TaskState::kDead);
  EXPECT_EQ(out.tasks[0].attempts, 2u);

  // Ticks with nothing due write nothing.
  advance(Millis(3'000));
  EXPECT_TRUE(take_outbox().tasks.empty());
}

TEST_F(SchedulerTest, OutboxReportsJobFinishedOnce) {
  JobId job = submit("1-2");
  add_worker("w", 2);
  ASSERT_TRUE(run_to_completion());
  int finished = 0;
  for (const Notice& n : take_outbox().notices) {
    if (n.kind == Notice::Kind::kJobFinished) {
      ++finished;
      EXPECT_EQ(n.job, job);
      EXPECT_EQ(n.job_state, JobState::kSucceeded);
    }
  }
  EXPECT_EQ(finished, 1);
}

TEST_F(SchedulerTest, QueriesPageAndFilterTasks) {
  JobId job = submit("1-10");
  add_worker("w", 3);
  dispatch();
  std::vector<TaskView> page = sched().tasks(job, 2, 3, std::nullopt);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].task, 2u);
  EXPECT_EQ(page[0].state, TaskState::kRunning);
  EXPECT_EQ(page[1].state, TaskState::kQueued);
  std::vector<TaskView> queued = sched().tasks(job, 1, 2, TaskState::kQueued);
  ASSERT_EQ(queued.size(), 2u);
  EXPECT_EQ(queued[0].task, 4u);
  EXPECT_EQ(sched().running_tasks(job, 2).size(), 2u);
  EXPECT_EQ(sched().worker_name(1), "w");
  EXPECT_EQ(sched().worker_name(9), "");
  EXPECT_FALSE(sched().job(42).has_value());
  EXPECT_EQ(sched().job_spec(42), nullptr);
  EXPECT_EQ(task_state_name(TaskState::kBackoff), "queued");
  EXPECT_EQ(job_state_name(JobState::kPaused), "paused");
}

// ------------------------------------------------------------------ limits and max running

uint32_t in_use(Scheduler& sched, const std::string& name) {
  for (const LimitView& limit : sched.limits()) {
    if (limit.name == name) return limit.in_use;
  }
  return 0;
}

TEST_F(SchedulerTest, ALimitCapsRunningTasksFarmWideAndTokensFreeAsTasksEnd) {
  sched().set_limit("nuke", 2);
  JobId a = submit("1-3", 1, with().limits({"nuke"}));
  JobId b = submit("1-3", 1, with().limits({"nuke"}));
  JobId free_job = submit("1-10");
  add_worker("w1", 4);
  add_worker("w2", 4);
  std::vector<Dispatch> first = dispatch();
  EXPECT_EQ(tasks_of(first, a).size() + tasks_of(first, b).size(), 2u);
  EXPECT_EQ(tasks_of(first, free_job).size(), 6u) << "the other slots go to unlimited work";
  EXPECT_EQ(in_use(sched(), "nuke"), 2u);
  for (int round = 0; round < 10 && !all_jobs_final(); ++round) {
    for (const Dispatch& d : first) {
      if (d.job != free_job) (void)succeed(d);
    }
    first = dispatch();
    EXPECT_LE(in_use(sched(), "nuke"), 2u);
    EXPECT_LE(tasks_of(first, a).size() + tasks_of(first, b).size(), 2u);
  }
  EXPECT_EQ(view(a).state, JobState::kSucceeded);
  EXPECT_EQ(view(b).state, JobState::kSucceeded);
  EXPECT_EQ(in_use(sched(), "nuke"), 0u);
}

TEST_F(SchedulerTest, AJobNamingAnUnknownLimitIsRefusedWithTheKnownOnes) {
  auto none = sched().submit(make_spec("1", 1, with().limits({"nuke"})), now());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().reason, "unknown limit 'nuke': no limits are configured");
  sched().set_limit("arnold", 5);
  sched().set_limit("houdini", 2);
  auto unknown = sched().submit(make_spec("1", 1, with().limits({"houdini", "nuke"})), now());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().reason, "unknown limit 'nuke'; the limits are arnold, houdini");
}

TEST_F(SchedulerTest, ALostWorkerFreesItsTokensAndIsNotAdoptedBackOverTheLimit) {
  sched().set_limit("lic", 1);
  JobId first = submit("1", 1, with().limits({"lic"}));
  WorkerId w1 = add_worker("w1");
  Dispatch mine = dispatch().at(0);
  ASSERT_EQ(mine.job, first);
  JobId urgent = submit("1", 1, with().limits({"lic"}).priority(10));
  silence(w1);
  advance(options_.lease_ttl + options_.backoff_base);
  EXPECT_EQ(in_use(sched(), "lic"), 0u) << "a lapsed lease keeps its token";
  ASSERT_EQ(state(first, 0), TaskState::kQueued);
  add_worker("w2");
  Dispatch theirs = dispatch().at(0);
  ASSERT_EQ(theirs.job, urgent) << "the freed token goes to the higher priority";
  EXPECT_EQ(in_use(sched(), "lic"), 1u);
  take_outbox();
  // w1 comes back still running its (requeued) task: adopting it would make
  // two holders of a one-token limit, so it is told to stop instead.
  WorkerId back = restart_worker(w1, {mine});
  Outbox out = take_outbox();
  ASSERT_EQ(out.cancels.size(), 1u) << "adopted over the limit";
  EXPECT_EQ(out.cancels[0].worker, back);
  EXPECT_EQ(state(first, 0), TaskState::kQueued);
  EXPECT_EQ(in_use(sched(), "lic"), 1u);
}

TEST_F(SchedulerTest, RestoredRunningTasksHoldTheirTokens) {
  sched().set_limit("lic", 1);
  ASSERT_TRUE(sched().restore_job(1, make_spec("1-3", 1, with().limits({"lic"})), false, false));
  sched().restore_task(1, 0, TaskState::kRunning, 1, 0, 0xabc, "w1", "");
  sched().finish_restore(now());
  EXPECT_EQ(in_use(sched(), "lic"), 1u);
  add_worker("w2", 4);
  EXPECT_TRUE(dispatch().empty()) << "a restarted broker handed out a token still held";
  // The restored lease lapses (its worker never came back): the token frees.
  advance(options_.lease_ttl + options_.backoff_base);
  EXPECT_EQ(dispatch().size(), 1u);
  EXPECT_EQ(in_use(sched(), "lic"), 1u);
}

TEST_F(SchedulerTest, RaisingALimitWakesWaitingJobsAndLoweringItStopsNothing) {
  sched().set_limit("lic", 1);
  JobId job = submit("1-4", 1, with().limits({"lic"}));
  add_worker("w1", 4);
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 1u);
  JobHold hold = sched().hold(job);
  EXPECT_EQ(hold.kind, JobHold::Kind::kLimit);
  EXPECT_EQ(hold.limit, "lic");
  EXPECT_EQ(hold.capacity, std::optional<uint32_t>(1));
  EXPECT_EQ(hold.in_use, 1u);

  sched().set_limit("lic", 3);
  EXPECT_EQ(dispatch().size(), 2u);
  sched().set_limit("lic", 1);
  EXPECT_EQ(count(job, TaskState::kRunning), 3u) << "lowering a limit stopped running tasks";
  (void)succeed(first[0]);
  EXPECT_TRUE(dispatch().empty()) << "dispatched while over the lowered limit";
  EXPECT_EQ(in_use(sched(), "lic"), 2u);

  sched().unset_limit("lic");
  EXPECT_EQ(sched().hold(job).capacity, std::nullopt) << "an unconfigured limit holds jobs";
}

TEST_F(SchedulerTest, AJobParkedOnALimitIsNotStarvedByOneNoWorkerServes) {
  sched().set_limit("lic", 1);
  JobId first = submit("1", 1, with().limits({"lic"}));
  add_worker("w1", 2);
  Dispatch d = dispatch().at(0);
  ASSERT_EQ(d.job, first);
  JobId unserved = submit("1", 1, with().limits({"lic"}).pool("gpu").priority(5));
  JobId served = submit("1", 1, with().limits({"lic"}));
  EXPECT_TRUE(dispatch().empty());
  (void)succeed(d);
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u) << "the freed token went unused";
  EXPECT_EQ(next[0].job, served);
  EXPECT_EQ(count(unserved, TaskState::kQueued), 1u);
}

TEST_F(SchedulerTest, MaxRunningCapsAJobAndItsSlotsGoToOthers) {
  JobId capped = submit("1-10", 1, with().max_running(3).priority(10));
  JobId other = submit("1-10");
  add_worker("w1", 8);
  std::vector<Dispatch> first = dispatch();
  EXPECT_EQ(tasks_of(first, capped).size(), 3u);
  EXPECT_EQ(tasks_of(first, other).size(), 5u);
  JobHold hold = sched().hold(capped);
  EXPECT_EQ(hold.kind, JobHold::Kind::kMaxRunning);
  EXPECT_EQ(hold.in_use, 3u);
  for (const Dispatch& d : first) {
    if (d.job == capped) {
      (void)succeed(d);
      break;
    }
  }
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, capped) << "its priority wins the freed slot, within its cap";
  EXPECT_EQ(count(capped, TaskState::kRunning), 3u);
}

// ------------------------------------------------------------------ worker control

TEST_F(SchedulerTest, ADisabledOrDrainingWorkerTakesNoNewTaskAndItsRunningOnesFinish) {
  JobId job = submit("1-6");
  WorkerId w1 = add_worker("w1", 2);
  WorkerId w2 = add_worker("w2", 2);
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 4u);
  sched().control_worker("w1", WorkerControl::kDraining, "disk swap");
  sched().control_worker("w2", WorkerControl::kDisabled, "bad RAM");
  for (const Dispatch& d : first) (void)succeed(d);
  EXPECT_TRUE(dispatch().empty()) << "a draining or disabled worker took a task";
  EXPECT_EQ(count(job, TaskState::kSucceeded), 4u) << "their running tasks were not kept";
  std::vector<WorkerView> views = sched().workers();
  ASSERT_EQ(views.size(), 2u);
  for (const WorkerView& v : views) {
    EXPECT_TRUE(v.running.empty());
    EXPECT_EQ(v.control, v.id == w1 ? WorkerControl::kDraining : WorkerControl::kDisabled);
  }
  // By name: a restarted worker process is still disabled.
  WorkerId again = restart_worker(w2, {});
  EXPECT_TRUE(dispatch().empty());
  sched().control_worker("w2", WorkerControl::kEnabled, "");
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].worker, again);
  EXPECT_TRUE(sched().knows_worker_name("w1"));
  EXPECT_FALSE(sched().knows_worker_name("w9"));
}

// ------------------------------------------------------------------ generated interleavings

// Drives a farm with random events from a fixed seed and checks, after every step,
// the invariants the broker relies on: one live lease per task at most, counts that
// add up, no stale token accepted, slots respected, backoff respected. Then it keeps
// dispatching and succeeding until every job is final.
class Interleaving : public Farm {
 public:
  explicit Interleaving(uint64_t seed) : Farm(options_for(seed)), rng_(seed) {}

  static Scheduler::Options options_for(uint64_t seed) {
    Scheduler::Options o;
    o.lease_ttl = Millis(8'000);
    o.heartbeat_interval = Millis(1'000);
    o.backoff_base = Millis(1'000);
    o.backoff_max = Millis(6'000);
    o.timeout_grace = Millis(2'000);
    o.seed = seed;
    return o;
  }

  void run(int steps) {
    sched().set_limit("lic", 2);
    if (resources_) sched().set_shares({{"showA", 3}, {"showB", 1}});
    for (const char* name : {"a", "b", "c"}) {
      std::vector<std::string> tags;
      if (coin(0.5)) tags.push_back("gpu");
      uint32_t cores = resources_ ? 2 + static_cast<uint32_t>(below(8)) : 0;
      uint64_t memory = resources_ ? (4 + below(16)) << 30 : 0;
      add_worker(name, 1 + static_cast<uint32_t>(below(3)), tags, {}, 0, {}, cores, memory);
    }
    for (step_ = 0; step_ < steps; ++step_) {
      step();
      if (::testing::Test::HasFatalFailure()) return;
      check_invariants();
      if (::testing::Test::HasFailure()) return;
    }
    drain();
  }

 private:
  uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  bool coin(double p) { return std::bernoulli_distribution(p)(rng_); }

  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

  std::vector<WorkerId> live_fakes() {
    std::vector<WorkerId> out;
    for (const auto& [id, fake] : fakes_) out.push_back(id);
    return out;
  }

  void step() {
    uint64_t roll = below(100);
    if (roll < 8 || jobs_.empty()) return submit_random();
    if (roll < 30) return dispatch_checked();
    if (roll < 45) return result_from_held(true);
    if (roll < 53) return result_from_held(false);
    if (roll < 58) return stale_result();
    if (roll < 70) return advance_checked(Millis(below(3'000)));
    if (roll < 73) return advance_checked(Millis(below(20'000)));
    if (roll < 75) return job_action(0);
    if (roll < 78) return job_action(1);
    if (roll < 81) return job_action(2);
    if (roll < 84) return job_action(3);
    if (roll < 85) return job_action(coin(0.5) ? 4 : 5);
    if (roll < 89) return restart_random();
    if (roll < 91) return worker_gone_random();
    if (task_actions_ && roll >= 93) return task_action();
    if (roll < 95) return silence_or_wake_random();
    return toggle_renewals_random();
  }

  void submit_random() {
    static const std::vector<std::string> kFrames = {"1-10", "1-20", "1-20x2", "-5-5",
                                                     "1-7",  "5-25", "1-3",    "10-1"};
    JobOptions o = with()
                       .priority(static_cast<int32_t>(below(3)) - 1)
                       .max_attempts(1 + static_cast<uint32_t>(below(3)));
    if (coin(0.2)) o.pool("gpu");
    if (!jobs_.empty() && coin(0.2)) o.after({pick(jobs_)});
    if (!jobs_.empty() && coin(0.3)) o.after_frames(pick(jobs_));
    if (coin(0.15)) o.timeout(seconds(4));
    if (coin(0.3)) o.limits({"lic"});
    if (coin(0.2)) o.max_running(1 + static_cast<uint32_t>(below(2)));
    if (resources_) {
      o.project(pick(std::vector<std::string>{"showA", "showB", "other"}));
      o.needs(static_cast<uint32_t>(below(5)), below(6) << 30);
      if (coin(0.3)) o.memory_retry_factor(1.5);
    }
    JobId id = submit(pick(kFrames), 1 + static_cast<uint32_t>(below(4)), o);
    ASSERT_NE(id, 0u);
    jobs_.push_back(id);
    collect_outbox();
  }

  void dispatch_checked() {
    std::map<WorkerId, WorkerView> before;
    for (const WorkerView& w : sched().workers()) before[w.id] = w;
    std::vector<Dispatch> ds = dispatch();
    for (const Dispatch& d : ds) {
      SCOPED_TRACE(fmt::format("dispatch job {} task {} to {}", d.job, d.task, d.worker));
      ASSERT_TRUE(before.count(d.worker));
      const WorkerView& w = before[d.worker];
      EXPECT_TRUE(w.alive) << "dispatched to a silent worker";
      const JobSpec* spec = sched().job_spec(d.job);
      ASSERT_NE(spec, nullptr);
      if (!spec->pool.empty()) {
        EXPECT_NE(std::find(w.spec.tags.begin(), w.spec.tags.end(), spec->pool), w.spec.tags.end())
            << "pool job on an untagged worker";
      }
      EXPECT_FALSE(blocked_.count({d.job, w.spec.name}))
          << "dispatched to a worker blocked for the job";
      EXPECT_TRUE(issued_[std::make_pair(d.job, d.task)].insert(d.lease).second)
          << "lease token reused";
      auto backoff = backoff_since_.find({d.job, d.task});
      if (backoff != backoff_since_.end()) {
        auto [failed_at, attempt] = backoff->second;
        int64_t full =
            std::min<int64_t>(options_.backoff_base.count() << (std::max(attempt, 1u) - 1),
                              options_.backoff_max.count());
        EXPECT_GE((now() - failed_at).count(), full - full / 2)
            << "attempt " << attempt << " retried before its backoff";
      }
    }
    collect_outbox();
  }

  // A worker reports one of the tasks it runs.
  void result_from_held(bool succeeded) {
    std::vector<WorkerId> with_work;
    for (const auto& [id, fake] : fakes_) {
      if (!fake.held.empty()) with_work.push_back(id);
    }
    if (with_work.empty()) return;
    WorkerId w = pick(with_work);
    Dispatch d = pick(fakes_.at(w).held);
    d.worker = w;
    drop_held(d);
    send_result(d, succeeded);
  }

  // A result from a lease the worker had dropped (a restart, a lost ack, a duplicate).
  void stale_result() {
    if (dropped_.empty()) return;
    Dispatch d = pick(dropped_);
    send_result(d, coin(0.5));
  }

  void send_result(const Dispatch& d, bool succeeded) {
    SCOPED_TRACE(fmt::format("result job {} task {} lease {} succeeded {}", d.job, d.task, d.lease,
                             succeeded));
    collect_outbox();
    std::optional<LeaseToken> live = live_lease(d.job, d.task);
    TaskView task_before = task(d.job, d.task);
    JobView job_before = view(d.job);
    bool current = live.has_value() && *live == d.lease;
    // The documented exception: a late success counts while no attempt runs,
    // unless `farmhand kill` stopped that attempt.
    bool late_success = succeeded && !live && task_before.state == TaskState::kQueued &&
                        !killed_.count({d.job, d.task, d.lease});
    TaskOutcome outcome;
    if (resources_ && !succeeded && coin(0.4)) outcome = {true, below(8) << 30};
    ResultVerdict verdict = sched().task_result(
        d.worker, ref(d), succeeded, Error{ErrorCode::kCrashed, "exit code 1"}, now(), outcome);
    dropped_.push_back(d);
    if (current || late_success) {
      EXPECT_EQ(verdict, ResultVerdict::kAccepted);
      EXPECT_FALSE(live_lease(d.job, d.task).has_value());
      if (succeeded) {
        EXPECT_EQ(state(d.job, d.task), TaskState::kSucceeded);
      }
    } else {
      EXPECT_EQ(verdict, ResultVerdict::kStale) << "stale lease token accepted";
      EXPECT_EQ(task(d.job, d.task).state, task_before.state);
      EXPECT_EQ(task(d.job, d.task).attempts, task_before.attempts);
      EXPECT_EQ(view(d.job).counts, job_before.counts);
      EXPECT_EQ(live_lease(d.job, d.task), live);
      Outbox out = sched().take_outbox();
      EXPECT_TRUE(out.tasks.empty()) << "a stale result changed a task";
    }
    collect_outbox();
  }

  void advance_checked(Millis by) {
    // Tick in small steps so the outbox is read close to when things happen.
    Millis target = now() + by;
    while (now() < target) {
      advance(std::min(options_.heartbeat_interval, target - now()));
      collect_outbox();
    }
  }

  void job_action(int which) {
    JobId job = pick(jobs_);
    switch (which) {
      case 0:
        (void)sched().cancel(job, now());
        break;
      case 1:
        (void)sched().pause(job, now());
        break;
      case 2:
        (void)sched().resume(job, now());
        break;
      case 4: {
        // Unblock one blocked worker or all of them.
        std::vector<WorkerBlock> blocks = sched().blocked_workers(job);
        std::string worker = !blocks.empty() && coin(0.5) ? pick(blocks).worker : std::string{};
        (void)sched().unblock(job, worker);  // collect_outbox reads what it cleared
        break;
      }
      case 5: {
        // A live change that keeps every invariant checked here: priority, and
        // max running raised or lifted (a lowered cap stops nothing that runs,
        // so running > cap is then allowed: scheduler_controls_test covers it).
        JobUpdate update;
        update.priority = static_cast<int32_t>(below(5)) - 2;
        const JobSpec* spec = sched().job_spec(job);
        if (spec && spec->max_running > 0 && coin(0.5)) {
          update.max_running = coin(0.5) ? 0 : spec->max_running + 1;
        }
        // (Only where asked: a draw more would change every seed's story.)
        if (spec && change_pools_ && coin(0.5)) update.pool = spec->pool.empty() ? "gpu" : "";
        (void)sched().update_job(job, update);
        break;
      }
      default:
        if (sched().retry(job, now()).has_value()) {
          for (auto it = backoff_since_.begin(); it != backoff_since_.end();) {
            it = it->first.first == job ? backoff_since_.erase(it) : std::next(it);
          }
        }
        break;
    }
    collect_outbox();
  }

  // A task-level action (retry, kill, kill --fail, skip, requeue) on a random
  // selection of one job's tasks, checked against what it promises.
  void task_action() {
    JobId job = pick(jobs_);
    JobView before = view(job);
    TaskSelection selection;
    const uint64_t how = below(4);
    if (how == 1 && before.task_count > 0) {
      TaskIndex first = static_cast<TaskIndex>(below(before.task_count));
      TaskIndex last = first + static_cast<TaskIndex>(below(before.task_count - first));
      selection.tasks = frames(fmt::format("{}-{}", first, last));
    } else if (how == 2) {
      static const std::vector<TaskState> kStates = {
          TaskState::kWaiting, TaskState::kQueued, TaskState::kRunning,  TaskState::kSucceeded,
          TaskState::kFailed,  TaskState::kDead,   TaskState::kCancelled};
      selection.state = pick(kStates);
    }
    std::vector<TaskState> states_before = states(job);
    std::vector<uint32_t> attempts_before;
    for (const TaskView& t : sched().tasks(job, 0, UINT32_MAX, std::nullopt)) {
      attempts_before.push_back(t.attempts);
    }
    collect_outbox();
    in_task_action_ = true;
    const uint64_t which = below(5);
    SCOPED_TRACE(fmt::format("task action {} on job {}", which, job));
    Result<uint64_t> changed = uint64_t{0};
    switch (which) {
      case 0:
        changed = sched().retry_tasks(job, selection, now());
        break;
      case 1:
      case 2:
        changed = sched().kill_tasks(job, selection, which == 2, "killed", now());
        break;
      case 3:
        changed = sched().skip_tasks(job, selection, now());
        break;
      default:
        changed = sched().requeue(job, selection, now());
        break;
    }
    collect_outbox();
    in_task_action_ = false;
    if (!changed) return;
    const std::vector<TaskState> after = states(job);
    uint64_t differ = 0;
    for (size_t t = 0; t < after.size(); ++t) {
      if (after[t] == states_before[t]) continue;
      ++differ;
      if (which == 1) {
        // Killed: back to the queue, the attempt keeps its number.
        EXPECT_EQ(states_before[t], TaskState::kRunning);
        EXPECT_EQ(after[t], TaskState::kQueued);
        EXPECT_EQ(task(job, static_cast<TaskIndex>(t)).attempts, attempts_before[t]);
      }
      if (which == 3) {
        EXPECT_EQ(after[t], TaskState::kSucceeded) << "skipped, not succeeded";
      }
    }
    // Killing, skipping and rerunning change exactly the tasks they count
    // (a rerun one may stay in its state: failed again by a broken upstream;
    // skipping a task releases others, in other jobs or this one's waiting ones).
    if (which == 1 || which == 2) {
      EXPECT_EQ(differ, *changed);
    }
    if (which == 4 && *changed > 0 && is_final(view(job).state)) {
      // Only a broken upstream fails a requeued job again at once.
      bool upstream = false;
      for (const TaskView& t : sched().tasks(job, 0, UINT32_MAX, std::nullopt)) {
        upstream = upstream || t.error.rfind("upstream job", 0) == 0;
      }
      EXPECT_TRUE(upstream) << "a requeued job is still finished";
    }
    if (which == 0 || which == 4) {
      for (auto it = backoff_since_.begin(); it != backoff_since_.end();) {
        it = it->first.first == job ? backoff_since_.erase(it) : std::next(it);
      }
    }
  }

  // What a restarted worker reports it still runs: each held task with probability
  // `keep`, now and then a lease it had already finished, and never more than its
  // slots (the fake may hold more: leases that lapsed while it did not renew, then
  // new work; a process runs at most its slots).
  std::vector<Dispatch> still_running(WorkerId w, double keep) {
    std::vector<Dispatch> out;
    for (const Dispatch& d : fakes_.at(w).held) {
      if (coin(keep)) {
        out.push_back(d);
      } else {
        dropped_.push_back(d);
      }
    }
    if (!dropped_.empty() && coin(0.1)) out.push_back(pick(dropped_));
    while (out.size() > fakes_.at(w).slots) {
      dropped_.push_back(out.back());
      out.pop_back();
    }
    return out;
  }

  void restart_random() {
    WorkerId old = pick(live_fakes());
    restart_worker(old, still_running(old, 0.6));
    collect_outbox();
  }

  void worker_gone_random() {
    WorkerId w = pick(live_fakes());
    for (const Dispatch& d : fakes_.at(w).held) dropped_.push_back(d);
    FakeWorker fake = fakes_.at(w);
    sched().worker_gone(w, now());
    fakes_.erase(w);
    collect_outbox();
    // It comes back at once as a fresh process.
    add_worker(fake.name, fake.slots, fake.tags, {}, 0, {}, fake.cores, fake.memory);
    collect_outbox();
  }

  void silence_or_wake_random() {
    WorkerId w = pick(live_fakes());
    FakeWorker& fake = fakes_.at(w);
    if (fake.heartbeats) {
      silence(w);
    } else if (sched().knows_worker(w)) {
      fake.heartbeats = true;
      fake.renews = true;
    } else {
      restart_worker(w, still_running(w, 1.0));
    }
    collect_outbox();
  }

  void toggle_renewals_random() {
    WorkerId w = pick(live_fakes());
    fakes_.at(w).renews = !fakes_.at(w).renews;
  }

  // Reads what the scheduler reports: failed attempts start a backoff, a task
  // that runs again has left it.
  void collect_outbox() {
    Outbox out = sched().take_outbox();
    if (in_task_action_) {
      for (const CancelOrder& c : out.cancels) killed_.insert({c.ref.job, c.ref.task, c.ref.lease});
    }
    for (const BlockChange& b : out.blocks) {
      if (b.blocked) {
        EXPECT_GE(b.block.failures, options_.block_after_failures);
        EXPECT_TRUE(blocked_.insert({b.block.job, b.block.worker}).second) << "blocked twice";
      } else {
        EXPECT_TRUE(blocked_.erase({b.block.job, b.block.worker})) << "unblocked, never blocked";
      }
    }
    // Backoff grows with the attempts of the task's current budget: a retry starts over.
    for (const TaskChange& c : out.tasks) budget_base_[{c.job, c.task}] = c.budget_base;
    for (const Notice& n : out.notices) {
      if (n.kind == Notice::Kind::kTaskFailed) {
        backoff_since_[{n.job, n.task}] = {now(), n.attempt - budget_base_[{n.job, n.task}]};
      }
    }
    for (const TaskChange& c : out.tasks) {
      if (c.state != TaskState::kQueued || c.attempts == 0) backoff_since_.erase({c.job, c.task});
    }
  }

  void check_invariants() {
    SCOPED_TRACE(fmt::format("step {}", step_));
    EXPECT_EQ(sched().audit(), "") << "an index of the scheduler's is out of step";
    uint64_t lic_running = 0;
    std::map<std::pair<JobId, TaskIndex>, int> leased;
    std::map<JobId, uint64_t> running_per_job;
    std::set<std::string> names;
    for (const WorkerView& w : sched().workers()) {
      EXPECT_TRUE(names.insert(w.spec.name).second) << "two sessions of worker " << w.spec.name;
      EXPECT_LE(w.running.size(), w.spec.slots) << "worker " << w.spec.name << " over its slots";
      if (w.spec.cores > 0) {
        EXPECT_LE(w.cores_used, w.spec.cores) << w.spec.name << " over cores";
      }
      if (w.spec.memory > 0) {
        EXPECT_LE(w.memory_used, w.spec.memory) << w.spec.name << " over memory";
      }
      for (const TaskRef& r : w.running) {
        EXPECT_EQ(++leased[std::make_pair(r.job, r.task)], 1) << "two live leases on a task";
        ++running_per_job[r.job];
        EXPECT_TRUE(issued_[std::make_pair(r.job, r.task)].count(r.lease)) << "lease never issued";
        EXPECT_EQ(state(r.job, r.task), TaskState::kRunning);
      }
    }
    for (JobId id : jobs_) {
      SCOPED_TRACE(fmt::format("job {}", id));
      JobView v = view(id);
      uint64_t sum = 0;
      for (uint64_t c : v.counts) sum += c;
      EXPECT_EQ(sum, v.task_count);
      EXPECT_EQ(v.counts[at(TaskState::kBackoff)], 0u);
      EXPECT_EQ(v.counts[at(TaskState::kRunning)], running_per_job[id]);
      EXPECT_EQ(sched().running_tasks(id, SIZE_MAX).size(), running_per_job[id]);
      for (const WorkerBlock& b : sched().blocked_workers(id)) {
        EXPECT_TRUE(blocked_.count({id, b.worker})) << "a block the outbox never told";
      }
      const JobSpec* spec = sched().job_spec(id);
      if (spec && spec->max_running > 0) {
        EXPECT_LE(running_per_job[id], spec->max_running) << "over the job's max running";
      }
      if (spec && !spec->limits.empty()) lic_running += running_per_job[id];
      uint64_t broken = v.counts[at(TaskState::kFailed)] + v.counts[at(TaskState::kDead)] +
                        v.counts[at(TaskState::kCancelled)];
      uint64_t terminal = broken + v.counts[at(TaskState::kSucceeded)];
      switch (v.state) {
        case JobState::kSucceeded:
          EXPECT_EQ(v.counts[at(TaskState::kSucceeded)], v.task_count);
          break;
        case JobState::kFailed:
          EXPECT_EQ(terminal, v.task_count);
          EXPECT_GT(broken, 0u);
          break;
        case JobState::kCancelled:
          EXPECT_TRUE(v.cancelled);
          EXPECT_EQ(v.counts[at(TaskState::kRunning)], 0u);
          break;
        case JobState::kPaused:
          EXPECT_TRUE(v.paused);
          break;
        default:
          EXPECT_LT(terminal, v.task_count);
      }
    }
    std::vector<LimitView> limits = sched().limits();
    ASSERT_EQ(limits.size(), 1u);
    EXPECT_EQ(limits[0].in_use, lic_running) << "tokens held and tasks running differ";
    EXPECT_LE(limits[0].in_use, 2u) << "limit exceeded";
  }

  // Everyone behaves from now on: every job must reach a final state.
  void drain() {
    for (JobId id : jobs_) (void)sched().resume(id, now());
    for (WorkerId w : live_fakes()) {
      if (!sched().knows_worker(w)) {
        restart_worker(w, still_running(w, 1.0));
      } else {
        fakes_.at(w).heartbeats = true;
        fakes_.at(w).renews = true;
      }
    }
    add_worker("drain", 8, {"gpu"}, {}, 0, {}, resources_ ? 64 : 0, resources_ ? 1ull << 40 : 0);
    ASSERT_TRUE(run_to_completion(2'000)) << "a job never finished";
    check_invariants();
    for (JobId id : jobs_) {
      JobView v = view(id);
      if (v.state == JobState::kSucceeded) continue;
      // A job that did not succeed says why: some task carries a reason.
      if (v.state == JobState::kFailed) {
        bool has_reason = false;
        for (const TaskView& t : sched().tasks(id, 0, UINT32_MAX, std::nullopt)) {
          if (is_terminal(t.state) && t.state != TaskState::kSucceeded && !t.error.empty()) {
            has_reason = true;
          }
        }
        EXPECT_TRUE(has_reason) << "job " << id << " failed without a reason";
      }
    }
  }

  std::mt19937_64 rng_;
  int step_ = 0;
  std::vector<JobId> jobs_;

 public:
  bool change_pools_ = false;  // live changes move jobs between pools too
  bool resources_ = false;     // shares on, workers with cores and memory, jobs asking for them
  bool task_actions_ = false;  // retry, kill, skip and requeue a selection of tasks too

 private:
  std::vector<Dispatch> dropped_;
  std::map<std::pair<JobId, TaskIndex>, std::set<LeaseToken>> issued_;
  std::map<std::pair<JobId, TaskIndex>, std::pair<Millis, uint32_t>> backoff_since_;
  std::map<std::pair<JobId, TaskIndex>, uint32_t> budget_base_;
  std::set<std::pair<JobId, std::string>> blocked_;  // as the outbox told
  // Leases that kill or skip stopped: their late results are stale.
  std::set<std::tuple<JobId, TaskIndex, LeaseToken>> killed_;
  bool in_task_action_ = false;
};

TEST_F(SchedulerTest, RandomEventInterleavingsKeepEveryInvariantAndEveryJobFinishes) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Interleaving run(seed);
    run.run(300);
    if (HasFailure()) break;  // one seed's story is enough to read
  }
}

// The same with jobs moving between pools (`job set --pool`) while they are
// queued, parked on the limit or running: per-pool run queues follow them.
TEST_F(SchedulerTest, RandomInterleavingsWithPoolChangesKeepEveryInvariant) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Interleaving run(seed);
    run.change_pools_ = true;
    run.run(300);
    if (HasFailure()) break;
  }
}

// The same with fair share on, workers with cores and memory and jobs asking
// for them (and some out-of-memory failures raising a request): no worker is
// ever over-committed and every index stays in step.
TEST_F(SchedulerTest, RandomInterleavingsWithSharesAndResourcesKeepEveryInvariant) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Interleaving run(seed);
    run.resources_ = true;
    run.run(300);
    if (HasFailure()) break;
  }
}

// Everything at once: shares, resources and task-level actions.
TEST_F(SchedulerTest, RandomInterleavingsWithEveryControlKeepEveryInvariant) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Interleaving run(seed + 1000);
    run.resources_ = true;
    run.task_actions_ = true;
    run.run(300);
    if (HasFailure()) break;
  }
}

// The same with task-level actions in the mix (`farmhand retry|kill|skip
// --tasks|--state`, `farmhand requeue`): no stale or killed lease is taken,
// limit tokens follow the running tasks, and every job still finishes.
TEST_F(SchedulerTest, RandomInterleavingsWithTaskActionsKeepEveryInvariant) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Interleaving run(seed);
    run.task_actions_ = true;
    run.run(300);
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace farmhand::core
