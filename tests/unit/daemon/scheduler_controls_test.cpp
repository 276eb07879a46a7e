// Scenario tests of a wrangler's controls that scheduler_test.cpp does not
// cover: bad-host blocks and live job changes (`farmhand job set`).
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/daemon/scheduler_farm.h"
#include <gtest/gtest.h>

#include "daemon/core/scheduler.h"

namespace farmhand::core {
namespace {

class ControlsTest : public ::testing::Test, public Farm {
 protected:
  // Dispatches to `worker` and fails what it gets, `times` times, waiting out
  // each backoff. Returns how many attempts it actually got.
  int fail_on(WorkerId worker, int times) {
    int got = 0;
    for (int i = 0; i < times; ++i) {
      advance(options_.backoff_max);
      for (const Dispatch& d : dispatch()) {
        if (d.worker != worker) continue;
        ++got;
        EXPECT_EQ(fail(d, "exit code 139"), ResultVerdict::kAccepted);
      }
    }
    return got;
  }

  std::vector<std::string> blocked_names(JobId job) {
    std::vector<std::string> out;
    for (const WorkerBlock& b : sched().blocked_workers(job)) out.push_back(b.worker);
    return out;
  }

  void SetUp() override {
    options_.backoff_base = Millis(100);
    options_.backoff_max = Millis(100);
  }
};

// ------------------------------------------------------------------ bad hosts

TEST_F(ControlsTest, AWorkerThatFailsAJobThreeTimesTakesNoMoreOfItAndAnotherFinishesIt) {
  JobId job = submit("1-4", 1, with().max_attempts(10));
  WorkerId bad = add_worker("bad");
  (void)take_outbox();
  ASSERT_EQ(fail_on(bad, 3), 3);

  Outbox out = take_outbox();
  ASSERT_EQ(out.blocks.size(), 1u);
  EXPECT_TRUE(out.blocks[0].blocked);
  EXPECT_EQ(out.blocks[0].block.job, job);
  EXPECT_EQ(out.blocks[0].block.worker, "bad");
  EXPECT_EQ(out.blocks[0].block.failures, 3u);
  EXPECT_EQ(out.blocks[0].block.reason, "exit code 139");
  auto notice = std::find_if(out.notices.begin(), out.notices.end(), [](const Notice& n) {
    return n.kind == Notice::Kind::kWorkerBlocked;
  });
  ASSERT_NE(notice, out.notices.end());
  EXPECT_TRUE(notice->every_worker_blocked) << "the only worker is blocked: the log must say so";

  // It gets nothing more of the job, and the job says why it waits.
  EXPECT_EQ(fail_on(bad, 3), 0);
  JobHold hold = sched().hold(job);
  EXPECT_EQ(hold.kind, JobHold::Kind::kBlocked);
  EXPECT_EQ(hold.workers, std::vector<std::string>{"bad"});
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{"bad"});

  // Another worker finishes it; the blocked one never takes a task of it.
  WorkerId good = add_worker("good");
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kNone);
  for (int round = 0; round < 50 && !is_final(view(job).state); ++round) {
    advance(options_.backoff_max);
    for (const Dispatch& d : dispatch()) {
      EXPECT_EQ(d.worker, good) << "a blocked worker got a task of the job";
      (void)succeed(d);
    }
  }
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
}

TEST_F(ControlsTest, ABlockIsForOneJobOnly) {
  JobId failing = submit("1-3", 1, with().max_attempts(10).priority(10));
  WorkerId w = add_worker("w");
  ASSERT_EQ(fail_on(w, 3), 3);
  JobId other = submit("1");
  advance(options_.backoff_max);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, other) << "the worker still serves the jobs it did not fail";
  EXPECT_EQ(blocked_names(other), std::vector<std::string>{});
  EXPECT_EQ(blocked_names(failing), std::vector<std::string>{"w"});
}

TEST_F(ControlsTest, FailuresOfOtherWorkersDoNotAddUp) {
  JobId job = submit("1-6", 1, with().max_attempts(10));
  WorkerId a = add_worker("a");
  WorkerId b = add_worker("b");
  // Two failures each: four in all, on two workers; neither is blocked.
  for (int i = 0; i < 2; ++i) {
    advance(options_.backoff_max);
    for (const Dispatch& d : dispatch()) (void)fail(d);
  }
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{});
  (void)a;
  (void)b;
}

TEST_F(ControlsTest, ATimedOutAttemptCountsAgainstItsWorker) {
  options_.timeout_grace = Millis(0);
  JobId job = submit("1-3", 1, with().max_attempts(10).timeout(seconds(2)));
  add_worker("slow");
  for (int i = 0; i < 3; ++i) {
    advance(options_.backoff_max);
    ASSERT_EQ(dispatch().size(), 1u);
    advance(Millis(2'500));  // past the timeout: the broker fails the attempt
  }
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{"slow"});
}

TEST_F(ControlsTest, UnblockClearsOneWorkerOrAllAndTheCountStartsAgain) {
  JobId job = submit("1-10", 1, with().max_attempts(50));
  WorkerId a = add_worker("a");
  ASSERT_EQ(fail_on(a, 3), 3);
  WorkerId b = add_worker("b");
  ASSERT_EQ(fail_on(b, 3), 3);
  EXPECT_EQ(blocked_names(job), (std::vector<std::string>{"a", "b"}));
  (void)take_outbox();

  Result<uint64_t> none = sched().unblock(job, "c");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);

  ASSERT_EQ(sched().unblock(job, "a").value_or(0), 1u);
  Outbox out = take_outbox();
  ASSERT_EQ(out.blocks.size(), 1u);
  EXPECT_FALSE(out.blocks[0].blocked);
  EXPECT_EQ(out.blocks[0].block.worker, "a");
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{"b"});

  // Its count starts from zero: two more failures do not block it again, a third does.
  EXPECT_EQ(fail_on(a, 2), 2);
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{"b"});
  EXPECT_EQ(fail_on(a, 1), 1);
  EXPECT_EQ(blocked_names(job), (std::vector<std::string>{"a", "b"}));

  ASSERT_EQ(sched().unblock(job, "").value_or(0), 2u);
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{});
  EXPECT_EQ(take_outbox().blocks.size(), 3u);  // a blocked again, then both cleared
}

TEST_F(ControlsTest, RetryingAJobLetsItsBlockedWorkersTryAgain) {
  JobId job = submit("1", 1, with().max_attempts(3));
  WorkerId w = add_worker("w");
  ASSERT_EQ(fail_on(w, 3), 3);
  EXPECT_EQ(view(job).state, JobState::kFailed);
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{"w"});
  (void)take_outbox();
  ASSERT_TRUE(sched().retry(job, now()).has_value());
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{});
  EXPECT_EQ(take_outbox().blocks.size(), 1u) << "the stored block goes too";
  EXPECT_EQ(fail_on(w, 1), 1) << "the only worker runs the retried task";
}

TEST_F(ControlsTest, BlockingCanBeTurnedOff) {
  options_.block_after_failures = 0;
  JobId job = submit("1-10", 1, with().max_attempts(50));
  WorkerId w = add_worker("w");
  EXPECT_EQ(fail_on(w, 6), 6);
  EXPECT_EQ(blocked_names(job), std::vector<std::string>{});
}

TEST_F(ControlsTest, ARestoredBlockKeepsTheWorkerOffTheJob) {
  ASSERT_TRUE(sched().restore_job(1, make_spec("1-2", 1, {}), false, false).has_value());
  sched().restore_block({1, "w", 3, "exit code 2"});
  sched().finish_restore(now());
  WorkerId w = add_worker("w");
  EXPECT_EQ(dispatch().size(), 0u);
  EXPECT_EQ(sched().hold(1).kind, JobHold::Kind::kBlocked);
  std::vector<WorkerBlock> blocks = sched().blocked_workers(1);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].failures, 3u);
  EXPECT_EQ(blocks[0].reason, "exit code 2");
  (void)w;
}

TEST_F(ControlsTest, AJobWhoseOnlyWorkerIsDisabledIsNotCalledBlocked) {
  JobId job = submit("1-10", 1, with().max_attempts(50));
  WorkerId a = add_worker("a");
  ASSERT_EQ(fail_on(a, 3), 3);
  add_worker("b");
  sched().control_worker("b", WorkerControl::kDisabled, "");
  // b is not eligible, a is blocked: blocked it is, naming only a.
  EXPECT_EQ(sched().hold(job).workers, std::vector<std::string>{"a"});
  sched().control_worker("b", WorkerControl::kEnabled, "");
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kNone);
}

// ------------------------------------------------------------------ job set

TEST_F(ControlsTest, RaisingAJobsPriorityReordersWhatRunsNext) {
  JobId first = submit("1-3");
  JobId second = submit("1-3");
  add_worker("w");
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, first);
  JobUpdate update;
  update.priority = 50;
  ASSERT_TRUE(sched().update_job(second, update).has_value());
  EXPECT_EQ(sched().job_spec(second)->priority, 50);
  EXPECT_TRUE(take_outbox().cancels.empty()) << "the running task keeps running";
  (void)succeed(ds[0]);
  for (int i = 0; i < 3; ++i) {
    ds = dispatch();
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].job, second);
    (void)succeed(ds[0]);
  }
}

TEST_F(ControlsTest, LoweringMaxRunningStopsNothingAndCapsWhatStartsNext) {
  JobId job = submit("1-10");
  add_worker("w", 4);
  std::vector<Dispatch> running = dispatch();
  ASSERT_EQ(running.size(), 4u);
  JobUpdate update;
  update.max_running = 2;
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_TRUE(take_outbox().cancels.empty());
  EXPECT_EQ(count(job, TaskState::kRunning), 4u);
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kMaxRunning);
  (void)succeed(running[0]);
  (void)succeed(running[1]);
  EXPECT_TRUE(dispatch().empty()) << "two still run: the cap is reached";
  (void)succeed(running[2]);
  EXPECT_EQ(dispatch().size(), 1u);
  EXPECT_EQ(count(job, TaskState::kRunning), 2u);
}

TEST_F(ControlsTest, ANewLimitBindsNewTasksWhileRunningOnesHoldNoToken) {
  sched().set_limit("nuke", 1);
  JobId job = submit("1-10");
  add_worker("w", 4);
  ASSERT_EQ(dispatch().size(), 4u);
  JobUpdate update;
  update.limits = std::vector<std::string>{"nuke"};
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_EQ(sched().limits()[0].in_use, 0u) << "tasks that started without it hold no token";
  std::vector<Dispatch> held = this->held(1);
  (void)succeed(held[0]);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(sched().limits()[0].in_use, 1u);
  (void)succeed(held[1]);
  EXPECT_TRUE(dispatch().empty()) << "the limit of 1 is taken";
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kLimit);
  (void)succeed(ds[0]);
  EXPECT_EQ(sched().limits()[0].in_use, 0u);
  EXPECT_EQ(dispatch().size(), 1u);
}

TEST_F(ControlsTest, DroppingALimitWakesTheJobParkedOnIt) {
  sched().set_limit("nuke", 0);
  JobId job = submit("1-2", 1, with().limits({"nuke"}));
  add_worker("w");
  EXPECT_TRUE(dispatch().empty());
  JobUpdate update;
  update.limits = std::vector<std::string>{};
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_EQ(dispatch().size(), 1u);
}

TEST_F(ControlsTest, ChangingThePoolSendsQueuedTasksOnlyToTheNewPool) {
  JobId job = submit("1-4");
  WorkerId plain = add_worker("plain");
  WorkerId gpu = add_worker("gpu", 1, {"gpu"});
  sched().control_worker("plain", WorkerControl::kDisabled, "");
  sched().control_worker("gpu", WorkerControl::kDisabled, "");
  JobUpdate update;
  update.pool = "gpu";
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  sched().control_worker("plain", WorkerControl::kEnabled, "");
  sched().control_worker("gpu", WorkerControl::kEnabled, "");
  for (int i = 0; i < 4; ++i) {
    std::vector<Dispatch> ds = dispatch();
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].worker, gpu);
    (void)succeed(ds[0]);
  }
  (void)plain;
}

// The farm-wide totals a metrics scrape reads are kept as jobs change (a scrape
// walked every job: 100,000 queued jobs stalled dispatch once a second), and
// follow a running job moved to another pool, a cancel and retention.
TEST_F(ControlsTest, FarmTotalsFollowJobsWithoutAWalk) {
  auto running_in = [](const std::vector<std::pair<std::string_view, uint64_t>>& counts,
                       std::string_view name) -> std::optional<uint64_t> {
    for (const auto& [n, running] : counts) {
      if (n == name) return running;
    }
    return std::nullopt;
  };
  JobId lights = submit("1-2", 1, with().project("showB").pool("gpu"));
  JobId comp = submit("1-3", 1, with().project("showA"));
  add_worker("w", 2);
  add_worker("g", 1, {"gpu"});
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 3u);
  FarmTotals t = sched().totals();
  EXPECT_EQ(t.tasks[static_cast<size_t>(TaskState::kRunning)], 3u);
  EXPECT_EQ(t.tasks[static_cast<size_t>(TaskState::kQueued)], 2u);
  EXPECT_EQ(t.jobs[static_cast<size_t>(JobState::kRunning)], 2u);
  EXPECT_EQ(running_in(t.running_by_pool, ""), 2u);
  EXPECT_EQ(running_in(t.running_by_pool, "gpu"), 1u);
  EXPECT_EQ(running_in(t.running_by_project, "showA"), 2u);
  EXPECT_EQ(running_in(t.running_by_project, "showB"), 1u);

  // Moved while two of its tasks run: they stay counted where they run.
  JobUpdate update;
  update.pool = "farm2";
  ASSERT_TRUE(sched().update_job(comp, update).has_value());
  t = sched().totals();
  EXPECT_EQ(running_in(t.running_by_pool, ""), 2u);
  EXPECT_EQ(running_in(t.running_by_pool, "farm2"), 0u) << "listed: it has an unfinished job";
  for (const Dispatch& d : ds) (void)succeed(d);
  t = sched().totals();
  EXPECT_EQ(running_in(t.running_by_pool, ""), std::nullopt) << "nothing runs or waits there";
  EXPECT_EQ(running_in(t.running_by_pool, "gpu"), 0u);
  EXPECT_EQ(t.tasks[static_cast<size_t>(TaskState::kSucceeded)], 3u);

  ASSERT_TRUE(sched().cancel(lights, now()).has_value());
  t = sched().totals();
  EXPECT_EQ(t.jobs[static_cast<size_t>(JobState::kCancelled)], 1u);
  EXPECT_EQ(sched().audit(), "");
  ASSERT_TRUE(sched().forget(lights));
  t = sched().totals();
  EXPECT_EQ(t.jobs[static_cast<size_t>(JobState::kCancelled)], 0u);
  EXPECT_EQ(running_in(t.running_by_project, "showB"), std::nullopt);
  uint64_t tasks = 0;
  for (uint64_t n : t.tasks) tasks += n;
  EXPECT_EQ(tasks, 3u) << "only the comp's tasks are left";
  EXPECT_EQ(running_in(t.running_by_pool, "gpu"), std::nullopt);
  EXPECT_EQ(sched().audit(), "");
}

// A job parked on a full limit, moved to another pool, is filed under the new
// pool where it waits, and runs only there once a token frees.
TEST_F(ControlsTest, AJobParkedOnALimitAndMovedToAnotherPoolRunsOnlyInTheNewOne) {
  sched().set_limit("lic", 1);
  JobId holder = submit("1", 1, with().limits({"lic"}));
  WorkerId plain = add_worker("plain", 2);
  WorkerId gpu = add_worker("gpu", 1, {"gpu"});
  Dispatch held = dispatch().at(0);
  ASSERT_EQ(held.job, holder);
  JobId job = submit("1-3", 1, with().limits({"lic"}));
  EXPECT_TRUE(dispatch().empty());
  JobUpdate update;
  update.pool = "gpu";
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_EQ(sched().audit(), "");
  (void)succeed(held);
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, job);
  EXPECT_EQ(next[0].worker, gpu);
  // Back to the default pool while it runs: its next task may go anywhere.
  update.pool = "";
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_EQ(sched().audit(), "");
  (void)succeed(next[0]);
  next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].worker, plain) << "the first worker with a free slot serves the default pool";
  EXPECT_EQ(sched().audit(), "");
}

// A token coming free moves no parked job back into the run queue (at 10,000
// parked jobs that was most of a dispatch's cost): the worker picks the best
// parked job it serves where it waits, and the rest stay parked.
TEST_F(ControlsTest, AFreedTokenGoesToTheBestParkedJobTheWorkerServesAndMovesNoOther) {
  sched().set_limit("lic", 1);
  JobId holder = submit("1", 1, with().limits({"lic"}));
  add_worker("w", 2);
  Dispatch held = dispatch().at(0);
  ASSERT_EQ(held.job, holder);
  std::vector<JobId> parked;
  for (int i = 0; i < 20; ++i) {
    parked.push_back(submit("1", 1, with().limits({"lic"}).priority(i % 3)));
  }
  JobId unserved = submit("1", 1, with().limits({"lic"}).pool("gpu").priority(9));
  EXPECT_TRUE(dispatch().empty());
  ASSERT_EQ(sched().limits().size(), 1u);
  EXPECT_EQ(sched().limits()[0].waiting_jobs, 21u);
  (void)succeed(held);
  EXPECT_EQ(sched().limits()[0].waiting_jobs, 0u) << "a free token: nothing waits for it";
  std::vector<Dispatch> next = dispatch();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, parked[2]) << "not the best job the worker serves";
  EXPECT_EQ(sched().limits()[0].waiting_jobs, 20u) << "parked jobs were moved";
  EXPECT_EQ(sched().audit(), "");
  // The rest go in priority order, one per token, until only the unserved one waits.
  std::vector<JobId> order{parked[2]};
  for (int i = 0; i < 19; ++i) {
    (void)succeed(next.at(0));
    next = dispatch();
    ASSERT_EQ(next.size(), 1u);
    order.push_back(next[0].job);
  }
  EXPECT_EQ(order,
            (std::vector<JobId>{parked[2],  parked[5],  parked[8],  parked[11], parked[14],
                                parked[17], parked[1],  parked[4],  parked[7],  parked[10],
                                parked[13], parked[16], parked[19], parked[0],  parked[3],
                                parked[6],  parked[9],  parked[12], parked[15], parked[18]}));
  (void)succeed(next[0]);
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(count(unserved, TaskState::kQueued), 1u);
  EXPECT_EQ(sched().audit(), "");
}

// Jobs of a pool the worker does not serve cost it nothing: it looks at its own
// pools' queues, and each stays in order however jobs move between them.
TEST_F(ControlsTest, EachWorkerTakesTheBestJobOfThePoolsItServes) {
  JobId any = submit("1-2", 1, with().priority(1));
  JobId gpu_low = submit("1-2", 1, with().pool("gpu"));
  JobId gpu_high = submit("1-2", 1, with().pool("gpu").priority(5));
  JobId cpu = submit("1-2", 1, with().pool("cpu").priority(9));
  WorkerId gpu = add_worker("g", 1, {"gpu"});
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, gpu_high);
  WorkerId plain = add_worker("p", 1);
  ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, any);
  EXPECT_EQ(ds[0].worker, plain);
  JobUpdate update;
  update.pool = "gpu";
  ASSERT_TRUE(sched().update_job(cpu, update).has_value());
  WorkerId gpu2 = add_worker("g2", 1, {"gpu", "cpu"});
  ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, cpu) << "the moved job lost its place";
  EXPECT_EQ(ds[0].worker, gpu2);
  EXPECT_EQ(count(gpu_low, TaskState::kRunning), 0u);
  EXPECT_EQ(sched().audit(), "");
  (void)gpu;
}

TEST_F(ControlsTest, AShorterTimeoutAppliesToTheRunningAttempt) {
  options_.timeout_grace = Millis(0);
  JobId job = submit("1", 1, with().timeout(seconds(600)));
  add_worker("w");
  ASSERT_EQ(dispatch().size(), 1u);
  advance(Millis(5'000));
  EXPECT_EQ(count(job, TaskState::kRunning), 1u);
  JobUpdate update;
  update.timeout = seconds(10);
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  advance(Millis(6'000));
  EXPECT_EQ(count(job, TaskState::kRunning), 0u) << "timed out 10 s after it started";
  EXPECT_EQ(task(job, 0).error, "timed out after 10 s");
}

TEST_F(ControlsTest, AnUpdateIsAllOrNothingAndRefusedForAFinishedJob) {
  sched().set_limit("nuke", 2);
  JobId job = submit("1-2");
  JobUpdate bad;
  bad.priority = 7;
  bad.limits = std::vector<std::string>{"nuke", "houdini"};
  Result<void> refused = sched().update_job(job, bad);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().reason, "unknown limit 'houdini'; the limits are nuke");
  EXPECT_EQ(sched().job_spec(job)->priority, 0) << "nothing of a refused update applies";

  JobUpdate too_many;
  too_many.max_attempts = 1000;
  EXPECT_FALSE(sched().update_job(job, too_many).has_value());

  add_worker("w", 2);
  ASSERT_TRUE(run_to_completion());
  JobUpdate late;
  late.priority = 1;
  Result<void> finished = sched().update_job(job, late);
  ASSERT_FALSE(finished.has_value());
  EXPECT_EQ(finished.error().reason, "job 1 already finished (succeeded)");
  EXPECT_FALSE(sched().update_job(99, late).has_value());
}

TEST_F(ControlsTest, MoreAttemptsKeepAFailingTaskOutOfDeath) {
  options_.block_after_failures = 0;
  JobId job = submit("1", 1, with().max_attempts(2));
  WorkerId w = add_worker("w");
  ASSERT_EQ(fail_on(w, 1), 1);
  JobUpdate update;
  update.max_attempts = 4;
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  ASSERT_EQ(fail_on(w, 2), 2);
  EXPECT_EQ(state(job, 0), TaskState::kQueued) << "3 failures of 4 allowed";
  ASSERT_EQ(fail_on(w, 1), 1);
  EXPECT_EQ(state(job, 0), TaskState::kDead);
}

}  // namespace
}  // namespace farmhand::core
