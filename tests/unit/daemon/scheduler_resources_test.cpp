// Scenario tests of fair share between projects and of packing tasks by the
// cores and memory they ask for.
#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/daemon/scheduler_farm.h"
#include <gtest/gtest.h>

#include "daemon/core/scheduler.h"

namespace farmhand::core {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

class ResourcesTest : public ::testing::Test, public Farm {
 protected:
  // Running tasks by project, as the workers see them.
  std::map<std::string, uint64_t> running_by_project() {
    std::map<std::string, uint64_t> out;
    for (const WorkerView& w : sched().workers()) {
      for (const TaskRef& r : w.running) ++out[sched().job_spec(r.job)->project];
    }
    return out;
  }

  // Every running task, over all workers.
  std::vector<Dispatch> all_held() {
    std::vector<Dispatch> out;
    for (const auto& [id, fake] : fakes_) out.insert(out.end(), fake.held.begin(), fake.held.end());
    return out;
  }

  // One task ends (a random one of those running) and the farm dispatches.
  void turn_over_one(std::mt19937_64& rng) {
    std::vector<Dispatch> held = all_held();
    ASSERT_FALSE(held.empty());
    (void)succeed(held[std::uniform_int_distribution<size_t>(0, held.size() - 1)(rng)]);
    (void)dispatch();
    ASSERT_EQ(sched().audit(), "");
  }

  void add_workers(int count, uint32_t slots) {
    for (int i = 0; i < count; ++i) add_worker("w" + std::to_string(i), slots);
  }
};

// ------------------------------------------------------------------ fair share

// The farm is full of showB's work when showA submits. Shares are 3:1. Every
// slot that frees goes to the project furthest under its share, so once every
// task that ran before has ended (one turnover of the farm: as many dispatches
// as it has slots, for tasks that end in the order they started) the running
// slots are 30:10, and they stay there.
TEST_F(ResourcesTest, SharesConvergeToTheirWeightsWithinOneTurnoverOfTheFarm) {
  sched().set_shares({{"showA", 3}, {"showB", 1}});
  add_workers(10, 4);  // 40 slots
  submit("1-5000", 1, with().project("showB"));
  std::deque<Dispatch> started;
  for (const Dispatch& d : dispatch()) started.push_back(d);
  ASSERT_EQ(started.size(), 40u);
  submit("1-5000", 1, with().project("showA"));
  uint64_t dispatches = 0;
  for (int i = 0; i < 440; ++i) {
    (void)succeed(started.front());
    started.pop_front();
    for (const Dispatch& d : dispatch()) {
      started.push_back(d);
      ++dispatches;
    }
    ASSERT_EQ(sched().audit(), "");
    auto running = running_by_project();
    ASSERT_EQ(running["showA"] + running["showB"], 40u);
    if (dispatches >= 40) {
      ASSERT_GE(running["showA"], 29u) << "after " << dispatches << " dispatches";
      ASSERT_LE(running["showA"], 31u) << "after " << dispatches << " dispatches";
    }
  }
  auto running = running_by_project();
  EXPECT_EQ(running["showA"], 30u);
  EXPECT_EQ(running["showB"], 10u);
}

// Tasks that end in any order: the freed slots still go to the project under
// its share, so showA's running count only grows until it reaches its share,
// and it stays within one slot of it.
TEST_F(ResourcesTest, SharesConvergeWhateverOrderTasksEndIn) {
  sched().set_shares({{"showA", 3}, {"showB", 1}});
  add_workers(10, 4);
  submit("1-5000", 1, with().project("showB"));
  ASSERT_EQ(dispatch().size(), 40u);
  submit("1-5000", 1, with().project("showA"));
  std::mt19937_64 rng(7);
  uint64_t last = 0;
  bool reached = false;
  for (int i = 0; i < 600; ++i) {
    turn_over_one(rng);
    uint64_t a = running_by_project()["showA"];
    if (!reached) {
      ASSERT_GE(a, last) << "showA lost slots while under its share";
    }
    reached = reached || a >= 30;
    if (reached) {
      ASSERT_TRUE(a >= 29 && a <= 31) << a;
    }
    last = a;
  }
  EXPECT_TRUE(reached);
}

// From an empty farm the first fill already has the proportions, however many
// jobs each project has: shares are between projects, not jobs.
TEST_F(ResourcesTest, AnEmptyFarmFillsInProportionWhateverTheJobCounts) {
  sched().set_shares({{"showA", 1}, {"showB", 1}});
  for (int i = 0; i < 9; ++i) submit("1-100", 1, with().project("showA"));
  submit("1-100", 1, with().project("showB"));
  add_workers(5, 4);
  ASSERT_EQ(dispatch().size(), 20u);
  auto running = running_by_project();
  EXPECT_EQ(running["showA"], 10u);
  EXPECT_EQ(running["showB"], 10u);
}

TEST_F(ResourcesTest, AnIdleProjectsShareGoesToTheOthersUntilItHasWork) {
  sched().set_shares({{"showA", 2}, {"showB", 1}, {"showC", 1}});
  submit("1-1000", 1, with().project("showA"));
  submit("1-1000", 1, with().project("showB"));
  add_workers(6, 4);  // 24 slots
  ASSERT_EQ(dispatch().size(), 24u);
  auto running = running_by_project();
  EXPECT_EQ(running["showA"], 16u) << "showC has nothing queued: A and B split 2:1";
  EXPECT_EQ(running["showB"], 8u);
  submit("1-1000", 1, with().project("showC"));
  std::mt19937_64 rng(3);
  for (int i = 0; i < 24; ++i) turn_over_one(rng);
  running = running_by_project();
  EXPECT_EQ(running["showA"], 12u);
  EXPECT_EQ(running["showB"], 6u);
  EXPECT_EQ(running["showC"], 6u);
}

TEST_F(ResourcesTest, PriorityStillWinsOverShares) {
  sched().set_shares({{"showA", 1}, {"showB", 9}});
  submit("1-100", 1, with().project("showB"));
  JobId urgent = submit("1-10", 1, with().project("showA").priority(50));
  add_workers(4, 4);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 16u);
  EXPECT_EQ(tasks_of(ds, urgent).size(), 10u) << "the higher priority runs first, over its share";
}

// Without shares, today's rule holds: equal-priority jobs share slots job by
// job, so a project with more jobs gets more slots.
TEST_F(ResourcesTest, WithoutSharesJobsShareSlotsJobByJob) {
  for (int i = 0; i < 3; ++i) submit("1-100", 1, with().project("showA"));
  submit("1-100", 1, with().project("showB"));
  add_workers(4, 4);
  ASSERT_EQ(dispatch().size(), 16u);
  auto running = running_by_project();
  EXPECT_EQ(running["showA"], 12u);
  EXPECT_EQ(running["showB"], 4u);
  EXPECT_TRUE(sched().shares().size() <= 2u);
}

TEST_F(ResourcesTest, TurningSharesOnAndOffRefilesQueuedJobs) {
  JobId a = submit("1-100", 1, with().project("showA"));
  JobId b = submit("1-100", 1, with().project("showB"));
  sched().set_shares({{"showA", 3}});
  EXPECT_EQ(sched().audit(), "");
  add_workers(2, 4);
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, a).size(), 6u);
  EXPECT_EQ(tasks_of(ds, b).size(), 2u);
  sched().set_shares({});
  EXPECT_EQ(sched().audit(), "");
  std::vector<ShareView> shares = sched().shares();
  auto showA = std::find_if(shares.begin(), shares.end(),
                            [](const ShareView& s) { return s.project == "showA"; });
  ASSERT_NE(showA, shares.end());
  EXPECT_EQ(showA->running, 6u);
  EXPECT_EQ(showA->weight, 1u) << "no shares: every project weighs 1";
}

// Projects the config does not name share one default share of weight 1, so
// inventing projects wins a client nothing (and keeps the queue groups as few
// as the config's shares).
TEST_F(ResourcesTest, ProjectsNotNamedShareOneDefaultShare) {
  sched().set_shares({{"showA", 1}});
  submit("1-1000", 1, with().project("showA"));
  for (int i = 0; i < 10; ++i) submit("1-1000", 1, with().project("made-up-" + std::to_string(i)));
  submit("1-1000", 1);  // no project at all
  add_workers(5, 4);
  ASSERT_EQ(dispatch().size(), 20u);
  auto running = running_by_project();
  EXPECT_EQ(running["showA"], 10u) << "showA's weight 1 against the default share's 1";
  uint64_t others = 0;
  for (const auto& [project, n] : running) others += project == "showA" ? 0 : n;
  EXPECT_EQ(others, 10u);
  EXPECT_EQ(sched().audit(), "");
  // A named share is listed even while it has no work.
  sched().set_shares({{"showA", 1}, {"idle", 5}});
  std::vector<ShareView> shares = sched().shares();
  auto idle = std::find_if(shares.begin(), shares.end(),
                           [](const ShareView& v) { return v.project == "idle"; });
  ASSERT_NE(idle, shares.end());
  EXPECT_TRUE(idle->named);
  EXPECT_EQ(idle->weight, 5u);
  // Naming one of them later gives it a share of its own, at once.
  sched().set_shares({{"showA", 1}, {"made-up-3", 2}});
  EXPECT_EQ(sched().audit(), "");
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200; ++i) turn_over_one(rng);
  running = running_by_project();
  EXPECT_GE(running["made-up-3"], 9u);
  EXPECT_LE(running["made-up-3"], 11u);
  EXPECT_GE(running["showA"], 4u);
  EXPECT_LE(running["showA"], 6u);
}

// ------------------------------------------------------------------ packing

// 16 cores and 64 GiB in 8 slots; tasks of 4 cores and 20 GiB: memory allows
// three. Small tasks fill the slots that are left, never past the cores.
TEST_F(ResourcesTest, PackingFillsWorkersWithoutOverCommittingCoresOrMemory) {
  JobId big = submit("1-100", 1, with().needs(4, 20 * kGiB));
  add_worker("w", 8, {}, {}, 0, {}, 16, 64 * kGiB);
  std::vector<Dispatch> ds = dispatch();
  EXPECT_EQ(tasks_of(ds, big).size(), 3u);
  JobId small = submit("1-100", 1, with().needs(1, 1 * kGiB));
  ds = dispatch();
  EXPECT_EQ(tasks_of(ds, small).size(), 4u) << "4 cores and 4 GiB are left";
  std::vector<WorkerView> workers = sched().workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].cores_used, 16u);
  EXPECT_EQ(workers[0].memory_used, 64 * kGiB);
  EXPECT_TRUE(dispatch().empty());
  // A big task ends: its room goes to what fits, the big job first.
  (void)succeed(held(workers[0].id)[0]);
  ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].job, big);
}

TEST_F(ResourcesTest, AWorkerThatDoesNotReportItsResourcesIsNotPackedAgainst) {
  JobId job = submit("1-10", 1, with().needs(64, 512 * kGiB));
  add_worker("old", 2);
  EXPECT_EQ(tasks_of(dispatch(), job).size(), 2u);
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kNone);
}

TEST_F(ResourcesTest, RandomRequestsNeverOverCommitAnyWorker) {
  std::mt19937_64 rng(11);
  auto below = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  for (int i = 0; i < 6; ++i) {
    add_worker("w" + std::to_string(i), 1 + static_cast<uint32_t>(below(8)), {}, {}, 0, {},
               1 + static_cast<uint32_t>(below(32)), (1 + below(64)) * kGiB);
  }
  std::vector<JobId> jobs;
  for (int i = 0; i < 12; ++i) {
    jobs.push_back(
        submit("1-50", 1, with().needs(static_cast<uint32_t>(below(9)), below(17) * kGiB)));
  }
  for (int round = 0; round < 300; ++round) {
    (void)dispatch();
    for (const WorkerView& w : sched().workers()) {
      ASSERT_LE(w.cores_used, w.spec.cores) << w.spec.name;
      ASSERT_LE(w.memory_used, w.spec.memory) << w.spec.name;
      ASSERT_LE(w.running.size(), w.spec.slots) << w.spec.name;
    }
    ASSERT_EQ(sched().audit(), "");
    std::vector<Dispatch> held = all_held();
    if (held.empty()) break;
    for (int k = 0; k < 3 && !held.empty(); ++k) {
      size_t i = below(held.size());
      (void)succeed(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  for (const WorkerView& w : sched().workers()) EXPECT_EQ(w.cores_used, 0u) << w.spec.name;
}

TEST_F(ResourcesTest, ARequestNoWorkerCanEverMeetSaysSoUntilALargerWorkerJoins) {
  JobId job = submit("1-4", 1, with().needs(64, 100 * kGiB));
  add_worker("small", 4, {}, {}, 0, {}, 32, 256 * kGiB);
  add_worker("tiny", 4, {}, {}, 0, {}, 8, 16 * kGiB);
  EXPECT_TRUE(dispatch().empty());
  JobHold hold = sched().hold(job);
  ASSERT_EQ(hold.kind, JobHold::Kind::kUnsatisfiable);
  EXPECT_EQ(hold.cores, 32u);
  EXPECT_EQ(hold.memory, 256 * kGiB);
  add_worker("big", 4, {}, {}, 0, {}, 128, 512 * kGiB);
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kNone);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u) << "128 cores hold two tasks of 64";
}

TEST_F(ResourcesTest, AJobSetRequestRepacksWhatStartsNext) {
  JobId job = submit("1-10", 1, with().needs(8, 0));
  add_worker("w", 8, {}, {}, 0, {}, 16, 0);
  EXPECT_EQ(dispatch().size(), 2u);
  JobUpdate update;
  update.cores = 2;
  ASSERT_TRUE(sched().update_job(job, update).has_value());
  EXPECT_EQ(sched().audit(), "");
  EXPECT_TRUE(dispatch().empty()) << "running tasks keep their booking: 16 of 16 cores";
  (void)succeed(all_held()[0]);
  EXPECT_EQ(dispatch().size(), 4u) << "8 free cores hold four tasks of 2";
  EXPECT_EQ(sched().workers()[0].cores_used, 16u);
}

// ------------------------------------------------------------------ out of memory

TEST_F(ResourcesTest, AnOutOfMemoryFailureRaisesTheJobsRequestByItsFactor) {
  JobId job = submit("1-2", 1, with().needs(0, 2 * kGiB).memory_retry_factor(1.5).max_attempts(3));
  add_worker("small", 1, {}, {}, 0, {}, 8, 4 * kGiB);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  (void)take_outbox();
  ASSERT_EQ(fail_out_of_memory(ds[0], 3 * kGiB), ResultVerdict::kAccepted);
  Outbox out = take_outbox();
  EXPECT_EQ(out.specs, std::vector<JobId>{job});
  EXPECT_EQ(sched().job_spec(job)->memory, 4608ull << 20) << "3 GiB peak x 1.5";
  advance(Millis(400'000));
  EXPECT_TRUE(dispatch().empty()) << "4.5 GiB does not fit the 4 GiB worker";
  EXPECT_EQ(sched().hold(job).kind, JobHold::Kind::kUnsatisfiable);
  add_worker("large", 1, {}, {}, 0, {}, 8, 8 * kGiB);
  ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(sched().worker_name(ds[0].worker), "large");
  EXPECT_EQ(ds[0].attempt, 2u) << "the task that ran out of memory runs again first";
  EXPECT_EQ(ds[0].task, 0u);
}

TEST_F(ResourcesTest, WithoutAFactorAnOutOfMemoryFailureIsAnOrdinaryFailure) {
  JobId job = submit("1", 1, with().needs(0, 2 * kGiB).max_attempts(1));
  add_worker("w", 1, {}, {}, 0, {}, 8, 4 * kGiB);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 1u);
  (void)fail_out_of_memory(ds[0], 3 * kGiB);
  EXPECT_TRUE(take_outbox().specs.empty());
  EXPECT_EQ(sched().job_spec(job)->memory, 2 * kGiB);
  EXPECT_EQ(view(job).state, JobState::kFailed);
}

// ------------------------------------------------------------------ restart

// After a broker restart the leases restored from the store book their
// worker's cores and memory again when it reconnects: nothing is over-committed.
TEST_F(ResourcesTest, RestoredLeasesBookTheirWorkerWhenItReconnects) {
  sched().set_shares({{"showA", 1}});
  JobId job = submit("1-10", 1, with().needs(4, 8 * kGiB).project("showA"));
  WorkerId w = add_worker("w", 8, {}, {}, 0, {}, 8, 64 * kGiB);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);

  Scheduler restored(options_);
  restored.set_shares({{"showA", 1}});
  ASSERT_TRUE(restored.restore_job(job, *sched().job_spec(job), false, false).has_value());
  for (const Dispatch& d : ds) {
    restored.restore_task(job, d.task, TaskState::kRunning, 1, 0, d.lease, "w", {});
  }
  restored.finish_restore(now());
  std::vector<TaskRef> refs;
  for (const Dispatch& d : ds) refs.push_back(ref(d));
  WorkerSpec spec{"w", 8, {}, 0, {}, {}, 8, 64 * kGiB, {}};
  ASSERT_TRUE(restored.worker_ready(w + 100, spec, refs, now()).accepted);
  std::vector<WorkerView> workers = restored.workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].cores_used, 8u);
  EXPECT_EQ(workers[0].memory_used, 16 * kGiB);
  EXPECT_TRUE(restored.dispatch(now() + Millis(60'000)).empty()) << "8 of 8 cores are booked";
  EXPECT_EQ(restored.shares()[0].running, 2u);
  EXPECT_EQ(restored.audit(), "");
}

// Tag choices (OpenJD host attributes): a worker needs one tag of each.
TEST_F(ResourcesTest, ATaskRunsOnlyOnAWorkerWithOneTagOfEachChoice) {
  JobSpec spec = make_spec("1-4", 1, {});
  spec.tag_choices = {{"cpu.arch=x86_64", "cpu.arch=arm64"}, {"site=london"}};
  Result<JobId> job = sched().submit(spec, now());
  ASSERT_TRUE(job.has_value());
  JobId plain = submit("1-2");
  add_worker("paris", 4, {"cpu.arch=x86_64", "site=paris"});
  add_worker("london-old", 4, {"cpu.arch=ppc64", "site=london"});
  for (const Dispatch& d : dispatch()) EXPECT_EQ(d.job, plain) << "on a worker without the tags";
  JobHold hold = sched().hold(*job);
  EXPECT_EQ(hold.kind, JobHold::Kind::kTags);
  EXPECT_EQ(hold.tags, "cpu.arch=x86_64|cpu.arch=arm64, site=london");
  add_worker("london", 4, {"cpu.arch=arm64", "site=london", "gpu"});
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 4u);
  for (const Dispatch& d : ds) EXPECT_EQ(d.job, *job);
  EXPECT_EQ(sched().hold(*job).kind, JobHold::Kind::kNone);
  EXPECT_EQ(sched().audit(), "");
}

// GPUs are packed as cores are, except that a worker without any takes no
// task that asks for one.
TEST_F(ResourcesTest, AWorkerRunsNoMoreGpuTasksThanItHasGpus) {
  JobSpec spec = make_spec("1-6", 1, {});
  spec.gpus = 1;
  Result<JobId> job = sched().submit(spec, now());
  ASSERT_TRUE(job.has_value());
  WorkerSpec none{"cpu", 8, {}, 0, {}, {}, 0, 0, 0, {}};
  WorkerSpec two{"gpu", 8, {}, 0, {}, {}, 0, 0, 2, {}};
  ASSERT_TRUE(join(none).verdict.accepted);
  EXPECT_TRUE(dispatch().empty());
  JobHold hold = sched().hold(*job);
  EXPECT_EQ(hold.kind, JobHold::Kind::kUnsatisfiable);
  EXPECT_EQ(hold.gpus, 0u);
  ASSERT_TRUE(join(two).verdict.accepted);
  std::vector<Dispatch> ds = dispatch();
  ASSERT_EQ(ds.size(), 2u);  // 8 slots, 2 GPUs
  EXPECT_EQ(sched().audit(), "");
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(*job).state, JobState::kSucceeded);
}

}  // namespace
}  // namespace farmhand::core
