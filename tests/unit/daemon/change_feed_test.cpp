// ChangeFeed: coalescing per job, nothing built while unwatched, entries made
// off the loop, and the gaps a resuming reader must be told of.
#include "daemon/change_feed.h"

#include <gtest/gtest.h>

#include "daemon/farm.h"

namespace farmhand::daemon {
namespace {

using Clock = std::chrono::steady_clock;

Batch task_changes(core::JobId job, core::TaskIndex first, core::TaskIndex count) {
  Batch batch;
  for (core::TaskIndex t = first; t < first + count; ++t) {
    core::TaskChange change;
    change.job = job;
    change.task = t;
    change.state = core::TaskState::kRunning;
    batch.task_changes.push_back(change);
  }
  return batch;
}

// One task change of each of `count` jobs from `first`: a busy farm's publish.
Batch one_change_each(core::JobId first, uint64_t count) {
  Batch batch;
  for (core::JobId job = first; job < first + count; ++job) {
    core::TaskChange change;
    change.job = job;
    batch.task_changes.push_back(change);
  }
  return batch;
}

// The job entries of what a reader got (each publish that changed jobs ends
// with one farm entry, tested on its own).
std::vector<ChangeFeed::EntryPtr> jobs_of(const std::vector<ChangeFeed::EntryPtr>& entries) {
  std::vector<ChangeFeed::EntryPtr> jobs;
  for (const auto& entry : entries) {
    if (entry->kind == "job") jobs.push_back(entry);
  }
  return jobs;
}

class ChangeFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    board_.enable();
    board_.publish_if_due(farm_, now_, 0);  // its first (empty) publish
  }

  // The loop's publish, then the wait for the feed's thread to make its entries.
  void publish() {
    feed_.publish_if_due(now_, board_);
    feed_.settle();
  }

  Farm farm_{core::Scheduler::Options{}};  // no jobs: every entry reads as forgotten (no card)
  JobBoard board_;
  ChangeFeed feed_;
  Clock::time_point now_ = Clock::time_point{} + std::chrono::hours(1);
  // The feed's own clock is now_; a reader waits on the real steady clock, so
  // it is given a time long past (now_ may lie ahead of a host up for less
  // than an hour, and a wait until then would hang): entries published are there.
  static constexpr Clock::time_point kNoWait{};
};

TEST_F(ChangeFeedTest, ManyChangesOfOneJobAreOneEntryPerInterval) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  for (int turn = 0; turn < 50; ++turn) {
    feed_.note(task_changes(7, static_cast<core::TaskIndex>(turn * 1000), 1000));
    publish();  // the first publishes, the rest wait their turn
  }
  auto first = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0]->kind, "job");
  EXPECT_EQ(first[0]->job_id, 7u);
  EXPECT_EQ(first[0]->tasks_changed, 1000u);
  EXPECT_EQ(first[0]->tasks.size(), 100u) << "task indices are capped";

  now_ += ChangeFeed::kCoalesce;
  publish();
  auto second = jobs_of(feed_.wait_after(first[0]->id, kNoWait));
  ASSERT_EQ(second.size(), 1u) << "49 turns of changes are one entry";
  EXPECT_EQ(second[0]->tasks_changed, 49'000u);
  EXPECT_EQ(second[0]->id, first[0]->id + 2) << "after the first publish's farm entry";
  feed_.unsubscribe();
}

// A job made, started, paused or cancelled, finished or forgotten since the
// last publish is marked moved (a reader of a few jobs gets those of every
// job); one whose tasks only ran on is not.
TEST_F(ChangeFeedTest, AJobThatChangedStateIsMarkedMovedAndOneThatRanOnIsNot) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  Batch batch = task_changes(1, 0, 3);
  JobRow made;
  made.id = 2;
  batch.new_jobs.push_back(made);
  batch.started.emplace_back(3, 1000);
  batch.finished.emplace_back(4, 2000);
  batch.job_changes.push_back(core::JobChange{5, true, false});
  batch.forgotten_jobs.push_back(6);
  Batch more = task_changes(3, 0, 2);  // the started job's tasks, in a later turn
  feed_.note(batch);
  feed_.note(more);
  publish();
  auto entries = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(entries.size(), 6u) << "one entry per job";
  for (const auto& entry : entries) {
    EXPECT_EQ(entry->moved, entry->job_id != 1) << "job " << entry->job_id;
  }
  EXPECT_EQ(entries[2]->job_id, 3u);
  EXPECT_EQ(entries[2]->tasks_changed, 2u) << "a moved job's task changes stay with it";

  now_ += ChangeFeed::kCoalesce;
  feed_.note(task_changes(2, 0, 1));
  publish();
  auto later = jobs_of(feed_.wait_after(entries.back()->id, kNoWait));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_FALSE(later[0]->moved) << "moved is for one publish only";
  feed_.unsubscribe();
}

// Entries that leave the ring are freed by the feed's thread, which made them
// (the loop retired thousands a publish on a busy farm).
TEST_F(ChangeFeedTest, EntriesLeavingTheRingAreFreedOffTheLoop) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(task_changes(1, 0, 1));
  publish();
  auto first = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(first.size(), 1u);
  std::weak_ptr<const ChangeFeed::Entry> oldest = first[0];
  const uint64_t seen = first[0]->id;
  first.clear();

  now_ += ChangeFeed::kCoalesce;
  feed_.note(one_change_each(2, ChangeFeed::kRingSize));
  publish();
  EXPECT_TRUE(oldest.expired()) << "what left the ring was not freed";
  auto rest = feed_.wait_after(seen, kNoWait);
  EXPECT_EQ(rest.size(), ChangeFeed::kRingSize);
  feed_.unsubscribe();
}

// The loop hands its notes over; it makes no entry itself (the feed's thread
// does, with the board as it was at the publish).
TEST_F(ChangeFeedTest, TheLoopsPublishHandsTheNotesOverAndTheFeedsThreadMakesTheEntries) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(one_change_each(1, 1000));
  feed_.publish_if_due(now_, board_);
  EXPECT_TRUE(feed_.nothing_noted()) << "the notes stayed with the loop";
  feed_.settle();
  auto entries = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(entries.size(), 1000u);
  EXPECT_EQ(entries.front()->job_id, 1u);
  EXPECT_EQ(entries.back()->job_id, 1000u);
  feed_.unsubscribe();
}

// A disabled board (no HTTP front to read it) has no summary to show: what was
// noted is dropped and an id spent, as if unwatched.
TEST_F(ChangeFeedTest, WithoutABoardChangesAreDroppedAndAReaderFindsTheGap) {
  JobBoard off;
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(task_changes(1, 0, 1));
  feed_.publish_if_due(now_, off);
  feed_.settle();
  EXPECT_TRUE(feed_.wait_after(from, kNoWait).empty());
  EXPECT_EQ(feed_.last_id(), from + 1) << "no id spent on the dropped changes";
  feed_.unsubscribe();
}

// A reader of a few jobs gets only their entries copied out, moves past the
// others, and is told when the ring no longer holds what follows its place.
TEST_F(ChangeFeedTest, AReaderOfAFewJobsGetsTheirEntriesAndMovesPastTheRest) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(one_change_each(1, 10));
  publish();
  auto even = [](const ChangeFeed::Entry& entry) {
    return entry.kind == "job" && entry.job_id % 2 == 0;
  };
  uint64_t after = from;
  bool behind = true;
  auto got = feed_.wait_after(after, kNoWait, even, behind);
  EXPECT_FALSE(behind);
  ASSERT_EQ(got.size(), 5u);
  for (const auto& entry : got) EXPECT_EQ(entry->job_id % 2, 0u);
  EXPECT_EQ(after, feed_.last_id()) << "moved past the entries it did not want";
  EXPECT_TRUE(feed_.wait_after(after, kNoWait, even, behind).empty());

  // Far behind: the ring holds nothing right after its place.
  const uint64_t stale = after;
  now_ += ChangeFeed::kCoalesce;
  feed_.note(one_change_each(1, ChangeFeed::kRingSize));
  publish();
  now_ += ChangeFeed::kCoalesce;
  feed_.note(task_changes(2, 0, 1));
  publish();
  after = stale;
  feed_.wait_after(after, kNoWait, even, behind);
  EXPECT_TRUE(behind);
  feed_.unsubscribe();
}

TEST_F(ChangeFeedTest, AReaderResumingAcrossUnwatchedChangesIsToldToReload) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(task_changes(1, 0, 1));
  publish();
  auto seen = feed_.wait_after(from, kNoWait);
  ASSERT_EQ(jobs_of(seen).size(), 1u);
  const uint64_t last = seen.back()->id;
  feed_.unsubscribe();

  // Nobody watches: nothing is built, but the change is not forgotten silently.
  now_ += ChangeFeed::kCoalesce;
  feed_.note(task_changes(2, 0, 1));
  publish();
  EXPECT_GT(feed_.last_id(), last);

  EXPECT_FALSE(feed_.subscribe(last, from)) << "resumed across a change it never saw";
  feed_.unsubscribe();
  EXPECT_TRUE(feed_.subscribe(feed_.last_id(), from));
  feed_.unsubscribe();
}

TEST_F(ChangeFeedTest, AReaderWhoComesBetweenAnUnwatchedChangeAndItsPublishIsToldToReload) {
  // note() keeps nothing while nobody watches (it runs every turn on the loop).
  feed_.note(task_changes(3, 0, 1));
  feed_.note_worker("render-02", "joined");
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note(task_changes(4, 0, 1));
  publish();
  auto entries = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(entries.size(), 1u) << "job 4, noted while watched";
  EXPECT_EQ(entries[0]->job_id, 4u);
  EXPECT_GT(entries[0]->id, from + 1)
      << "job 3 and the worker changed unseen: the reader must find a gap and reload";
  feed_.unsubscribe();
}

TEST_F(ChangeFeedTest, JobEntriesShareTheBoardsSummariesAndWaitForItsNextPublish) {
  wire::JobSpec spec;
  spec.set_kind("noop");
  spec.set_frames("1-4");
  spec.set_name("shared");
  auto core_spec = to_core_spec(spec);
  ASSERT_TRUE(core_spec);
  auto id = farm_.scheduler->submit(*core_spec, core::Millis(0));
  ASSERT_TRUE(id);
  farm_.jobs.add(*id, JobRecord{spec, 1, 0, 0});
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  Batch batch = task_changes(*id, 0, 1);
  feed_.note(batch);
  board_.note(batch);
  // The board has a change it has not published: the feed waits for it
  // rather than show a summary older than what it noted.
  publish();
  EXPECT_TRUE(feed_.wait_after(from, kNoWait).empty());
  board_.publish_if_due(farm_, now_, 1);
  publish();
  auto entries = jobs_of(feed_.wait_after(from, kNoWait));
  ASSERT_EQ(entries.size(), 1u);
  auto card = JobBoard::find(*board_.snapshot(), *id);
  ASSERT_TRUE(card);
  EXPECT_EQ(entries[0]->card, card) << "one card for the list and the stream";
  EXPECT_EQ(entries[0]->card->summary().name(), "shared");
  feed_.unsubscribe();
}

// Each publish that changed jobs ends with one farm entry counting them and
// their task changes: a page about the whole farm (workers, limits) reloads on
// it and reads no job's entry. A publish of no job has none.
TEST_F(ChangeFeedTest, APublishOfJobsEndsWithOneFarmEntry) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  Batch batch = task_changes(1, 0, 3);
  Batch more = task_changes(2, 0, 2);
  feed_.note(batch);
  feed_.note(more);
  feed_.note(task_changes(1, 3, 1));
  publish();
  auto entries = feed_.wait_after(from, kNoWait);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0]->kind, "job");
  EXPECT_EQ(entries[1]->kind, "job");
  const auto& farm = *entries[2];
  EXPECT_EQ(farm.kind, "farm") << "after the jobs it counts";
  EXPECT_EQ(farm.jobs_changed, 2u);
  EXPECT_EQ(farm.tasks_changed, 6u);

  now_ += ChangeFeed::kCoalesce;
  feed_.note_worker("render-01", "joined");
  publish();
  auto workers = feed_.wait_after(farm.id, kNoWait);
  ASSERT_EQ(workers.size(), 1u) << "no job changed: no farm entry";
  EXPECT_EQ(workers[0]->kind, "worker");
  feed_.unsubscribe();
}

TEST_F(ChangeFeedTest, WorkersAndPublishesAreEntriesToo) {
  uint64_t from = 0;
  ASSERT_TRUE(feed_.subscribe(0, from));
  feed_.note_worker("render-01", "lost: silent");
  Batch batch;
  batch.events.push_back(EventRow{"ev-1", 0, ""});
  feed_.note(batch);
  publish();
  auto entries = feed_.wait_after(from, kNoWait);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]->kind, "worker");
  EXPECT_EQ(entries[0]->what, "lost: silent");
  EXPECT_EQ(entries[1]->kind, "publish");
  EXPECT_EQ(entries[1]->name, "ev-1");
  feed_.close();
  EXPECT_TRUE(feed_.wait_after(entries[1]->id, Clock::now() + std::chrono::hours(1)).empty())
      << "a closed feed wakes its readers";
  feed_.unsubscribe();
}

}  // namespace
}  // namespace farmhand::daemon
