// JobBoard: what the HTTP front lists without asking the loop — filtered,
// sorted and paged by cursor off a published snapshot, republished in chunks.
#include "daemon/job_board.h"

#include <set>

#include <gtest/gtest.h>

#include "daemon/farm.h"

namespace farmhand::daemon {
namespace {

using Clock = std::chrono::steady_clock;

class JobBoardTest : public ::testing::Test {
 protected:
  JobBoardTest() { board_.enable(); }

  core::JobId add_job(const std::string& name, const std::string& project, const std::string& user,
                      int priority = 50) {
    wire::JobSpec spec;
    spec.set_kind("noop");
    spec.set_frames("1-10");
    spec.set_name(name);
    spec.set_project(project);
    spec.set_submitted_by(user);
    spec.set_priority(priority);
    (*spec.mutable_labels())["shot"] = name.substr(0, 3);
    auto core_spec = to_core_spec(spec);
    EXPECT_TRUE(core_spec) << core_spec.error().reason;
    auto id = farm_.scheduler->submit(*core_spec, core::Millis(0));
    EXPECT_TRUE(id) << id.error().reason;
    farm_.jobs.add(*id, JobRecord{spec, 1'000 + static_cast<int64_t>(*id), 0, 0});
    Batch batch;
    batch.new_jobs.push_back(JobRow{*id, spec.SerializeAsString(), 0, ""});
    board_.note(batch);
    return *id;
  }

  void publish() {
    now_ += JobBoard::kInterval;
    board_.publish_if_due(farm_, now_, 42);
  }

  JobBoard::Page query(const std::string& sort, const std::string& cursor = {},
                       uint32_t limit = 100, wire::ListRequest filter = {}) {
    JobBoard::Query q;
    q.sort = sort;
    q.cursor = cursor;
    q.limit = limit;
    q.filter = std::move(filter);
    auto page = JobBoard::query(*board_.snapshot(), q);
    EXPECT_TRUE(page) << page.error().reason;
    return page ? *page : JobBoard::Page{};
  }

  static std::vector<uint64_t> ids(const JobBoard::Page& page) {
    std::vector<uint64_t> out;
    for (const auto& card : page.jobs) out.push_back(card->id());
    return out;
  }

  Farm farm_{core::Scheduler::Options{}};
  JobBoard board_;
  Clock::time_point now_ = Clock::time_point{} + std::chrono::hours(1);
};

TEST_F(JobBoardTest, FiltersAsTheCliDoesAndListsTheNewestFirst) {
  const core::JobId a = add_job("sh010 comp", "showA", "alice");
  const core::JobId b = add_job("sh020 comp", "showB", "bob");
  const core::JobId c = add_job("sh010 lighting", "showA", "bob");
  publish();
  EXPECT_EQ(ids(query("")), (std::vector<uint64_t>{c, b, a}));
  EXPECT_EQ(query("").as_of_unix_ms, 42);

  wire::ListRequest project;
  project.set_project("showA");
  EXPECT_EQ(ids(query("id", {}, 100, project)), (std::vector<uint64_t>{a, c}));
  wire::ListRequest user_and_text;
  user_and_text.set_user("bob");
  user_and_text.set_name_contains("COMP");
  EXPECT_EQ(ids(query("", {}, 100, user_and_text)), (std::vector<uint64_t>{b}));
  wire::ListRequest label;
  (*label.mutable_labels())["shot"] = "sh0";
  EXPECT_EQ(query("", {}, 100, label).matched, 3u);
  (*label.mutable_labels())["shot"] = "sh1";
  EXPECT_EQ(query("", {}, 100, label).matched, 0u);
  wire::ListRequest state;
  state.set_state(wire::JOB_SUCCEEDED);
  EXPECT_EQ(query("", {}, 100, state).matched, 0u);
  state.set_state(wire::JOB_QUEUED);
  EXPECT_EQ(query("", {}, 100, state).matched, 3u);
}

TEST_F(JobBoardTest, CursorPagesVisitEveryJobOnceInSortOrderWhileJobsChange) {
  std::vector<core::JobId> all;
  for (int i = 0; i < 700; ++i) {  // several chunks
    all.push_back(
        add_job("job " + std::to_string(i % 37), "p" + std::to_string(i % 5), "u", i % 7));
  }
  publish();
  for (const std::string sort : {"name", "-priority", "project", "-id", "submitted"}) {
    std::set<uint64_t> seen;
    std::string cursor;
    std::string last_name;
    int pages = 0;
    do {
      JobBoard::Page page = query(sort, cursor, 64);
      EXPECT_EQ(page.matched, all.size());
      for (const auto& card : page.jobs) {
        EXPECT_TRUE(seen.insert(card->id()).second)
            << sort << ": job " << card->id() << " shown twice";
        if (sort == "name") {
          EXPECT_LE(last_name, card->summary().name()) << "out of order";
          last_name = card->summary().name();
        }
      }
      cursor = page.next_cursor;
      // A job the pages passed is gone before the next page: the rest still come.
      if (pages++ == 2) {
        const core::JobId gone = *seen.begin();
        ASSERT_TRUE(farm_.scheduler->cancel(gone, core::Millis(0)).has_value());
        ASSERT_TRUE(farm_.scheduler->forget(gone));
        farm_.jobs.erase(gone);
        Batch batch;
        batch.forgotten_jobs.push_back(gone);
        board_.note(batch);
        publish();
        all.erase(std::find(all.begin(), all.end(), gone));
      }
    } while (!cursor.empty());
    EXPECT_EQ(seen.size(), all.size() + 1) << sort << ": every job once (and the one forgotten)";
  }
}

// The feed's one pass over the board finds each job's card as a search does,
// across gaps, missing chunks and strides.
TEST(JobBoardWalkTest, OnePassFindsWhatASearchFinds) {
  JobBoard::Snapshot snapshot;
  auto chunk = [](uint64_t first, uint64_t last, uint64_t step) {
    auto out = std::make_shared<JobBoard::Chunk>();
    for (uint64_t id = first; id <= last; id += step) {
      auto card = std::make_shared<JobBoard::Card>();
      card->job_id = id;
      out->push_back(std::move(card));
    }
    return out;
  };
  const uint64_t k = JobBoard::kChunk;
  snapshot.chunks.emplace_back(0, chunk(1, k - 1, 2));          // odd ids
  snapshot.chunks.emplace_back(2, chunk(2 * k, 3 * k - 1, 3));  // chunk 1 is missing
  snapshot.chunks.emplace_back(5, chunk(5 * k + 7, 5 * k + 7, 1));
  for (uint64_t stride : {1u, 2u, 7u, 300u}) {
    JobBoard::Walk walk(snapshot);
    for (uint64_t id = 1; id < 7 * k; id += stride) {
      EXPECT_EQ(walk.find(id), JobBoard::find(snapshot, id)) << "id " << id << " stride " << stride;
    }
  }
}

TEST_F(JobBoardTest, APublishRemakesOnlyTheChunksOfChangedJobs) {
  std::vector<core::JobId> all;
  for (int i = 0; i < 3 * static_cast<int>(JobBoard::kChunk); ++i) {
    all.push_back(add_job("j", "p", "u"));
  }
  publish();
  auto before = board_.snapshot();
  ASSERT_GE(before->chunks.size(), 3u);
  EXPECT_EQ(before->jobs, all.size());
  const core::JobId changed = all[JobBoard::kChunk + 5];
  ASSERT_TRUE(farm_.scheduler->pause(changed, core::Millis(0)).has_value());
  Batch batch;
  batch.job_changes.push_back(core::JobChange{changed, true, false});
  board_.note(batch);
  publish();
  auto after = board_.snapshot();
  ASSERT_EQ(after->chunks.size(), before->chunks.size());
  int shared = 0;
  for (size_t i = 0; i < after->chunks.size(); ++i) {
    if (after->chunks[i].second == before->chunks[i].second) ++shared;
  }
  EXPECT_EQ(shared, static_cast<int>(before->chunks.size()) - 1) << "only one chunk is new";
  wire::ListRequest paused;
  paused.set_state(wire::JOB_PAUSED);
  JobBoard::Page page = query("", {}, 100, paused);
  EXPECT_EQ(ids(page), (std::vector<uint64_t>{changed}));
  EXPECT_EQ(before->jobs, all.size()) << "a reader's snapshot never changes under it";
}

TEST_F(JobBoardTest, ACardKeepsItsFixedPartUntilTheSpecChanges) {
  // A running job changes every turn: its card is remade from a few numbers,
  // sharing the rest, which is remade only when the spec changes (job set).
  const core::JobId id = add_job("fixed", "p", "u", 10);
  publish();
  auto first = JobBoard::find(*board_.snapshot(), id);
  ASSERT_TRUE(first);
  ASSERT_TRUE(farm_.scheduler->pause(id, core::Millis(0)).has_value());
  Batch paused;
  paused.job_changes.push_back(core::JobChange{id, true, false});
  board_.note(paused);
  publish();
  auto second = JobBoard::find(*board_.snapshot(), id);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->fixed, first->fixed) << "nothing of the spec changed";
  EXPECT_EQ(second->summary().state(), wire::JOB_PAUSED);
  EXPECT_EQ(first->summary().state(), wire::JOB_QUEUED) << "a published card never changes";

  core::JobUpdate update;
  update.priority = 90;
  ASSERT_TRUE(farm_.scheduler->update_job(id, update).has_value());
  Batch set;
  set.spec_changes.push_back(SpecChange{id, ""});
  board_.note(set);
  publish();
  auto third = JobBoard::find(*board_.snapshot(), id);
  ASSERT_TRUE(third);
  EXPECT_NE(third->fixed, second->fixed);
  EXPECT_EQ(third->summary().priority(), 90);
  EXPECT_EQ(third->summary().state(), wire::JOB_PAUSED);
}

TEST_F(JobBoardTest, ManyChangesWaitForTheIntervalAFewGoOutAtOnce) {
  add_job("first", "p", "u");
  publish();
  EXPECT_FALSE(board_.next_publish());
  // A few changed jobs (a client's own submit): published in the same turn.
  add_job("second", "p", "u");
  board_.publish_if_due(farm_, now_ + std::chrono::milliseconds(1), 43);
  EXPECT_EQ(board_.snapshot()->jobs, 2u);
  // Many (a busy farm's turn): coalesced until kInterval after the last publish.
  for (size_t i = 0; i <= JobBoard::kFewJobs; ++i) add_job("more", "p", "u");
  board_.publish_if_due(farm_, now_ + std::chrono::milliseconds(2), 44);
  EXPECT_EQ(board_.snapshot()->jobs, 2u);
  ASSERT_TRUE(board_.next_publish());
  EXPECT_EQ(*board_.next_publish(), now_ + std::chrono::milliseconds(1) + JobBoard::kInterval);
  board_.publish_if_due(farm_, *board_.next_publish(), 45);
  EXPECT_EQ(board_.snapshot()->jobs, 3u + JobBoard::kFewJobs);
}

TEST_F(JobBoardTest, BadSortsAndCursorsAreRefusedWithOneLine) {
  add_job("a", "p", "u");
  add_job("b", "p", "u");
  publish();
  JobBoard::Query q;
  q.sort = "colour";
  auto bad_sort = JobBoard::query(*board_.snapshot(), q);
  ASSERT_FALSE(bad_sort);
  EXPECT_NE(bad_sort.error().reason.find("unknown sort 'colour'"), std::string::npos);
  q.sort = "name";
  q.limit = 1;
  auto first = JobBoard::query(*board_.snapshot(), q);
  ASSERT_TRUE(first);
  ASSERT_FALSE(first->next_cursor.empty());
  q.sort = "-name";
  q.cursor = first->next_cursor;
  auto other_sort = JobBoard::query(*board_.snapshot(), q);
  ASSERT_FALSE(other_sort) << "a cursor belongs to its sort";
  EXPECT_NE(other_sort.error().reason.find("cursor not understood"), std::string::npos);
  for (const std::string& junk :
       std::vector<std::string>{"zz", "abc", "6e616d657e317e697e", std::string(9000, 'a')}) {
    q.sort = "name";
    q.cursor = junk;
    EXPECT_FALSE(JobBoard::query(*board_.snapshot(), q)) << junk;
  }
}

TEST_F(JobBoardTest, NothingIsKeptUntilEnabledAndARestoreRemakesEveryCard) {
  JobBoard off;
  Batch batch;
  batch.new_jobs.push_back(JobRow{1, "", 0, ""});
  off.note(batch);
  off.publish_if_due(farm_, now_, 1);
  EXPECT_EQ(off.snapshot()->jobs, 0u);
  EXPECT_FALSE(off.next_publish());
  add_job("a", "p", "u");
  add_job("b", "p", "u");
  off.enable();
  off.publish_if_due(farm_, now_, 2);
  EXPECT_EQ(off.snapshot()->jobs, 2u) << "the first publish reads every job";
}

}  // namespace
}  // namespace farmhand::daemon
