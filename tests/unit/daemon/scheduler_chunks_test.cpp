// Adaptive chunks (`--chunk-target`, OpenJD's targetRuntimeSeconds): the
// untouched tail of a job is cut again into chunks sized to the target runtime
// as its tasks succeed; tasks that ran or changed keep their frames.
#include <string>
#include <vector>

#include "tests/unit/daemon/scheduler_farm.h"
#include <gtest/gtest.h>

#include "daemon/core/scheduler.h"

namespace farmhand::core {
namespace {

class ChunksTest : public ::testing::Test, public Farm {
 protected:
  JobId submit_adaptive(std::string_view frame_text, uint32_t chunk, uint32_t target_s,
                        uint64_t max_gap = 0, const JobOptions& opts = {}) {
    JobSpec spec = make_spec(frame_text, chunk, opts);
    spec.chunk_target_s = target_s;
    spec.chunk_max_gap = max_gap;
    Result<JobId> id = sched().submit(std::move(spec), now());
    if (!id) {
      ADD_FAILURE() << id.error().reason;
      return 0;
    }
    return *id;
  }

  std::vector<std::string> task_frames(JobId job) {
    std::vector<std::string> out;
    for (TaskIndex t = 0; t < view(job).task_count; ++t) {
      out.push_back(sched().task_frames(job, t).to_string());
    }
    return out;
  }

  // Every frame of the job once, in order, over its tasks.
  void expect_tasks_cover(JobId job, std::string_view frame_text) {
    std::vector<int64_t> all;
    for (TaskIndex t = 0; t < view(job).task_count; ++t) {
      std::vector<int64_t> got = frame_list(sched().task_frames(job, t));
      EXPECT_FALSE(got.empty()) << "task " << t;
      all.insert(all.end(), got.begin(), got.end());
    }
    EXPECT_EQ(all, frame_list(frame_text));
  }

  bool spec_changed(JobId job) {
    Outbox out = sched().take_outbox();
    return std::find(out.specs.begin(), out.specs.end(), job) != out.specs.end();
  }
};

TEST(ChunkRunsTest, BalancedChunksDifferByAtMostOneFrame) {
  std::vector<ChunkRun> runs;
  append_chunk_runs(frames("1-12"), 0, 5, 0, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{3, 4}}));
  runs.clear();
  append_chunk_runs(frames("1-13"), 0, 5, 0, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{1, 5}, {2, 4}}));
  runs.clear();
  append_chunk_runs(frames("1-13"), 3, 100, 0, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{1, 10}}));
}

TEST(ChunkRunsTest, ContiguousChunksNeverSpanAGap) {
  std::vector<ChunkRun> runs;
  // 1-5 (in 3 chunks of 2, 2, 1), 10-12 (2, 1), 20 (1).
  append_chunk_runs(frames("1-5,10-12,20"), 0, 2, 1, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{2, 2}, {1, 1}, {1, 2}, {2, 1}}));
  runs.clear();
  // A stepped range is frames one by one, and joins a neighbour it touches:
  // 1, 3, 5, 7-9.
  append_chunk_runs(frames("1-7x2,8-9"), 0, 10, 1, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{3, 1}, {1, 3}}));
  runs.clear();
  // Without the constraint the gaps are ignored.
  append_chunk_runs(frames("1-5,10-12,20"), 0, 3, 0, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{3, 3}}));
}

TEST(ChunkRunsTest, AWiderGapSplitsOnlyWhereFramesLieFurtherApart) {
  std::vector<ChunkRun> runs;
  // Gaps of up to 10 are one part: 1-5,10-12 (8 frames in 2 chunks of 4), 40-41.
  append_chunk_runs(frames("1-5,10-12,40-41"), 0, 5, 10, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{2, 4}, {1, 2}}));
  runs.clear();
  // A stepped range within the gap is one part: 0-20x5 (5 frames), then 100.
  append_chunk_runs(frames("0-20x5,100"), 0, 2, 5, runs);
  EXPECT_EQ(runs, (std::vector<ChunkRun>{{2, 2}, {2, 1}}));
}

TEST_F(ChunksTest, AnAdaptiveJobStartsInBalancedChunks) {
  JobId job = submit_adaptive("1-12", 5, 60);
  EXPECT_EQ(task_frames(job), (std::vector<std::string>{"1-4", "5-8", "9-12"}));
  JobId gaps = submit_adaptive("1-5,10-12", 2, 60, 1);
  EXPECT_EQ(task_frames(gaps), (std::vector<std::string>{"1-2", "3-4", "5", "10-11", "12"}));
  // Without a target, chunks are `chunk` frames and the last takes the rest.
  JobId plain = submit("1-12", 5);
  EXPECT_EQ(task_frames(plain), (std::vector<std::string>{"1-5", "6-10", "11-12"}));
}

TEST_F(ChunksTest, FastTasksGrowTheChunksOfTheUntouchedTail) {
  add_worker("w1", 1);
  JobId job = submit_adaptive("1-100", 10, 10);  // 10 s a chunk
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 1u);
  (void)sched().take_outbox();
  advance(Millis(5'000));  // 10 frames in 5 s: 20 frames make 10 s
  EXPECT_EQ(succeed(first[0]), ResultVerdict::kAccepted);
  EXPECT_TRUE(spec_changed(job));
  EXPECT_EQ(task_frames(job),
            (std::vector<std::string>{"1-10", "11-28", "29-46", "47-64", "65-82", "83-100"}));
  EXPECT_EQ(view(job).frames_succeeded, 10u);
  EXPECT_EQ(view(job).counts[at(TaskState::kQueued)], 5u);
  EXPECT_EQ(sched().audit(), "");
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).state, JobState::kSucceeded);
  EXPECT_EQ(view(job).frames_succeeded, 100u);
  expect_tasks_cover(job, "1-100");
}

TEST_F(ChunksTest, SlowTasksShrinkTheChunksAndTheJobGainsTasks) {
  add_worker("w1", 2);
  JobId job = submit_adaptive("1-40", 10, 10);
  std::vector<Dispatch> running = dispatch();
  ASSERT_EQ(running.size(), 2u);  // tasks 0 and 1 run: they keep their frames
  advance(Millis(50'000));        // 10 frames in 50 s: 2 frames make 10 s
  EXPECT_EQ(succeed(running[0]), ResultVerdict::kAccepted);
  EXPECT_EQ(task_frames(job),
            (std::vector<std::string>{"1-10", "11-20", "21-22", "23-24", "25-26", "27-28", "29-30",
                                      "31-32", "33-34", "35-36", "37-38", "39-40"}));
  EXPECT_EQ(view(job).task_count, 12u);
  EXPECT_EQ(succeed(running[1]), ResultVerdict::kAccepted);
  EXPECT_EQ(view(job).frames_succeeded, 20u);
  EXPECT_EQ(sched().audit(), "");
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(job).frames_succeeded, 40u);
  expect_tasks_cover(job, "1-40");
}

TEST_F(ChunksTest, ASizeWithinAQuarterOfTheTailsIsLeftAlone) {
  add_worker("w1", 1);
  JobId job = submit_adaptive("1-100", 10, 10);
  std::vector<Dispatch> first = dispatch();
  (void)sched().take_outbox();
  advance(Millis(8'500));  // 12 frames would make 10 s: within a quarter of 10
  EXPECT_EQ(succeed(first[0]), ResultVerdict::kAccepted);
  EXPECT_FALSE(spec_changed(job));
  EXPECT_EQ(view(job).task_count, 10u);
}

TEST_F(ChunksTest, TasksThatChangedKeepTheirFramesWhereverTheyAre) {
  add_worker("w1", 1);
  JobId job = submit_adaptive("1-100", 10, 10);
  // The last task was skipped by hand: it has a row in the store now.
  TaskSelection last;
  last.tasks = frames("9");
  ASSERT_TRUE(sched().skip_tasks(job, last, now()).has_value());
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 1u);
  advance(Millis(5'000));
  EXPECT_EQ(succeed(first[0]), ResultVerdict::kAccepted);
  // Nothing after the skipped task is untouched, and it is the last: no cut.
  EXPECT_EQ(view(job).task_count, 10u);
  EXPECT_EQ(sched().task_frames(job, 9).to_string(), "91-100");
}

TEST_F(ChunksTest, AJobOthersWaitOnFrameByFrameIsNeverCutAgain) {
  add_worker("w1", 1);
  JobId up = submit_adaptive("1-100", 10, 10);
  JobId down = submit("1-100", 1, with().after_frames(up));
  std::vector<Dispatch> first = dispatch();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].job, up);
  advance(Millis(5'000));
  EXPECT_EQ(succeed(first[0]), ResultVerdict::kAccepted);
  EXPECT_EQ(view(up).task_count, 10u);
  ASSERT_TRUE(run_to_completion());
  EXPECT_EQ(view(down).state, JobState::kSucceeded);
}

TEST_F(ChunksTest, ARestoredJobHasTheTasksItsStoredRunsSay) {
  add_worker("w1", 1);
  JobId job = submit_adaptive("1-100", 10, 10);
  std::vector<Dispatch> first = dispatch();
  advance(Millis(5'000));
  EXPECT_EQ(succeed(first[0]), ResultVerdict::kAccepted);
  const JobSpec stored = *sched().job_spec(job);
  ASSERT_FALSE(stored.chunk_runs.empty());

  Scheduler restored(Scheduler::Options{});
  ASSERT_TRUE(restored.restore_job(job, stored, false, false).has_value());
  restored.restore_task(job, 0, TaskState::kSucceeded, 1, 0, 0, "w1", "");
  restored.finish_restore(now());
  EXPECT_EQ(restored.job(job)->task_count, view(job).task_count);
  EXPECT_EQ(restored.job(job)->frames_succeeded, 10u);
  for (TaskIndex t = 0; t < view(job).task_count; ++t) {
    EXPECT_EQ(restored.task_frames(job, t), sched().task_frames(job, t)) << "task " << t;
  }
  EXPECT_EQ(restored.audit(), "");
}

TEST_F(ChunksTest, RunsThatDoNotCoverTheFramesAreRefused) {
  JobSpec spec = make_spec("1-10", 5, {});
  spec.chunk_runs = {{2, 4}};
  Result<JobId> id = sched().submit(spec, now());
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().reason, "chunk runs cover 8 frames of 10");
}

}  // namespace
}  // namespace farmhand::core
