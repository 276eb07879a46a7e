// SqliteStore against real SQLite in a temporary directory.
#include "daemon/store/sqlite_store.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/logging.h"
#include "daemon/store/migrations.h"
#include "daemon/store/task_state_code.h"

namespace farmhand::daemon {
namespace {

namespace fs = std::filesystem;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fh-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "farmhand.db").string();
  }

  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<SqliteStore> open() {
    auto store = SqliteStore::open(path_, "full");
    EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().reason);
    return store ? std::move(*store) : nullptr;
  }

  struct Loaded {
    std::vector<JobRow> jobs;
    std::map<std::pair<core::JobId, core::TaskIndex>, TaskRow> tasks;
  };

  Loaded load(Store& store) {
    Loaded out;
    auto ok = store.load([&](JobRow&& row) { out.jobs.push_back(std::move(row)); },
                         [&](TaskRow&& row) {
                           auto key = std::make_pair(row.job, row.task);
                           EXPECT_FALSE(out.tasks.contains(key))
                               << "task " << row.job << "/" << row.task << " loaded twice";
                           out.tasks[key] = std::move(row);
                         });
    EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error().reason);
    return out;
  }

  static JobRow job(core::JobId id, std::string key = {}) {
    JobRow row;
    row.id = id;
    row.spec = std::string("spec-bytes\0with-nul", 19);
    row.submitted_unix_ms = 1'700'000'000'000;
    row.idempotency_key = std::move(key);
    return row;
  }

  static core::TaskChange task(core::JobId job, core::TaskIndex idx, core::TaskState state,
                               uint32_t attempts, std::string error = {}) {
    core::TaskChange change;
    change.job = job;
    change.task = idx;
    change.state = state;
    change.attempts = attempts;
    change.lease = 0xfedcba9876543210ULL;  // above INT64_MAX: must survive the int64 column
    change.worker = "render-03";
    change.error = std::move(error);
    return change;
  }

  // Runs `sql` on the database file directly, as another program would.
  void exec_raw(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  // The rows of running_attempts in rowid order: "job/task attempts=N worker=W".
  std::vector<std::string> running_attempt_rows() {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT job_id, idx, attempts, worker FROM running_attempts "
                                 "ORDER BY rowid",
                                 -1, &stmt, nullptr),
              SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      rows.push_back(fmt::format("{}/{} attempts={} worker={}", sqlite3_column_int64(stmt, 0),
                                 sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2),
                                 reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3))));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rows;
  }

  static core::TaskChange running(core::JobId job, core::TaskIndex idx, uint32_t attempts,
                                  std::string worker, core::LeaseToken lease) {
    core::TaskChange change = task(job, idx, core::TaskState::kRunning, attempts);
    change.worker = std::move(worker);
    change.lease = lease;
    return change;
  }

  fs::path dir_;
  std::string path_;
};

// What a component's logger writes while it lives, one message per line.
class CapturedLog {
 public:
  explicit CapturedLog(const std::string& component)
      : logger_(common::logger(component)),
        sink_(std::make_shared<spdlog::sinks::ostream_sink_st>(lines_)) {
    sink_->set_pattern("%v");
    logger_->sinks().push_back(sink_);
  }

  ~CapturedLog() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }

  std::string text() const { return lines_.str(); }

 private:
  std::ostringstream lines_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<spdlog::sinks::ostream_sink_st> sink_;
};

TEST_F(SqliteStoreTest, CommittedBatchIsLoadedBackAfterReopen) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1, "key-1"));
    batch.new_jobs.push_back(job(2));
    batch.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
    batch.task_changes.push_back(task(1, 7, core::TaskState::kDead, 3, "exit code 1 from x"));
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 2u);
  EXPECT_EQ(loaded.jobs[0].id, 1u);
  EXPECT_EQ(loaded.jobs[0].idempotency_key, "key-1");
  EXPECT_EQ(loaded.jobs[0].spec, job(1).spec);
  EXPECT_EQ(loaded.jobs[1].idempotency_key, "");
  ASSERT_EQ(loaded.tasks.size(), 2u);
  const TaskRow& dead = loaded.tasks.at({1, 7});
  EXPECT_EQ(dead.state, core::TaskState::kDead);
  EXPECT_EQ(dead.attempts, 3u);
  EXPECT_EQ(dead.error, "exit code 1 from x");
  EXPECT_EQ(dead.lease, 0xfedcba9876543210ULL);
  EXPECT_EQ(dead.worker, "render-03");
  EXPECT_EQ(dead.budget_base, 0u);
}

TEST_F(SqliteStoreTest, AttemptsOfEarlierBudgetsArePersistedBesideTheAttemptCount) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    core::TaskChange retried = task(1, 0, core::TaskState::kQueued, 4);
    retried.budget_base = 3;
    batch.task_changes.push_back(retried);
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.at({1, 0}).attempts, 4u);
  EXPECT_EQ(loaded.tasks.at({1, 0}).budget_base, 3u);
}

TEST_F(SqliteStoreTest, TaskStatesAreStoredUnderTheirFixedCodes) {
  // The codes are the file format (0001_init.sql): pinned here, whatever the enum's order.
  const std::vector<std::pair<core::TaskState, int>> pinned = {
      {core::TaskState::kWaiting, 0},  {core::TaskState::kQueued, 1},
      {core::TaskState::kRunning, 2},  {core::TaskState::kSucceeded, 3},
      {core::TaskState::kFailed, 4},   {core::TaskState::kDead, 5},
      {core::TaskState::kCancelled, 6}};
  for (const auto& [state, code] : pinned) {
    EXPECT_EQ(task_state_code(state), code) << core::task_state_name(state);
    EXPECT_EQ(task_state_from_code(code), state) << code;
  }
  // A task backing off is stored as queued: its delay is not durable.
  EXPECT_EQ(task_state_code(core::TaskState::kBackoff), 1);
  for (int unknown : {-1, 7, 8, 255, 1000}) {
    EXPECT_EQ(task_state_from_code(unknown), std::nullopt) << unknown;
  }

  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  for (const auto& [state, code] : pinned) {
    batch.task_changes.push_back(task(1, static_cast<core::TaskIndex>(code), state, 1));
  }
  ASSERT_TRUE(store->commit(batch).has_value());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT idx, state FROM tasks ORDER BY idx", -1, &stmt, nullptr),
            SQLITE_OK);
  std::vector<std::pair<int, int>> rows;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    rows.emplace_back(sqlite3_column_int(stmt, 0), sqlite3_column_int(stmt, 1));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  // A running attempt is a row of running_attempts (0012), not a state code.
  EXPECT_EQ(rows,
            (std::vector<std::pair<int, int>>{{0, 0}, {1, 1}, {3, 3}, {4, 4}, {5, 5}, {6, 6}}));
  EXPECT_EQ(running_attempt_rows(), (std::vector<std::string>{"1/2 attempts=1 worker=render-03"}));
  Loaded loaded = load(*store);
  for (const auto& [state, code] : pinned) {
    EXPECT_EQ(loaded.tasks.at({1, static_cast<core::TaskIndex>(code)}).state, state) << code;
  }
}

TEST_F(SqliteStoreTest, TaskRowWithAnUnknownStateCodeIsSkippedWithOneLineNotTakenForAState) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
    batch.task_changes.push_back(task(1, 1, core::TaskState::kSucceeded, 1));
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  exec_raw("UPDATE tasks SET state = 7 WHERE idx = 1");  // 7: the in-memory kBackoff
  auto store = open();
  CapturedLog log("store");
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.at({1, 0}).state, core::TaskState::kSucceeded);
  EXPECT_EQ(log.text(), "task row skipped at load job=1 task=1 reason=\"unknown state code 7\"\n");
}

TEST_F(SqliteStoreTest, LaterTaskChangeReplacesTheRow) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  batch.task_changes.push_back(task(1, 3, core::TaskState::kRunning, 1));
  batch.task_changes.push_back(task(1, 3, core::TaskState::kQueued, 1, "lease expired"));
  ASSERT_TRUE(store->commit(batch).has_value());
  Batch second;
  second.task_changes.push_back(task(1, 3, core::TaskState::kSucceeded, 2));
  ASSERT_TRUE(store->commit(second).has_value());
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.at({1, 3}).state, core::TaskState::kSucceeded);
  EXPECT_EQ(loaded.tasks.at({1, 3}).attempts, 2u);
  EXPECT_EQ(loaded.tasks.at({1, 3}).error, "");
}

// A dispatch appends a row to running_attempts instead of rewriting the task's
// row (0012): at load that row is the task's state until a later change of the
// task deletes it in the same transaction.
TEST_F(SqliteStoreTest, ARunningAttemptIsARowOfItsOwnUntilTheTaskMovesOn) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.task_changes.push_back(task(1, 0, core::TaskState::kQueued, 0));
    batch.task_changes.push_back(task(1, 1, core::TaskState::kQueued, 0));
    ASSERT_TRUE(store->commit(batch).has_value());
    Batch dispatch;
    core::TaskChange first = running(1, 0, 1, "render-01", 0xfedcba9876543210ULL);
    first.budget_base = 1;
    first.error = "exit code 3";  // of an earlier attempt: kept while this one runs
    dispatch.task_changes.push_back(first);
    dispatch.task_changes.push_back(running(1, 1, 1, "render-02", 22));
    ASSERT_TRUE(store->commit(dispatch).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 2u);
  const TaskRow& row = loaded.tasks.at({1, 0});
  EXPECT_EQ(row.state, core::TaskState::kRunning);
  EXPECT_EQ(row.attempts, 1u);
  EXPECT_EQ(row.budget_base, 1u);
  EXPECT_EQ(row.lease, 0xfedcba9876543210ULL);
  EXPECT_EQ(row.worker, "render-01");
  EXPECT_EQ(row.error, "exit code 3");
  EXPECT_EQ(loaded.tasks.at({1, 1}).state, core::TaskState::kRunning);

  // Task 0 ends; task 1's worker was lost and it runs again elsewhere, twice
  // over in one batch: one row per task, the latest.
  Batch next;
  next.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
  next.task_changes.push_back(running(1, 1, 2, "render-03", 23));
  next.task_changes.push_back(running(1, 1, 3, "render-04", 24));
  ASSERT_TRUE(store->commit(next).has_value());
  EXPECT_EQ(running_attempt_rows(), (std::vector<std::string>{"1/1 attempts=3 worker=render-04"}));
  loaded = load(*store);
  EXPECT_EQ(loaded.tasks.at({1, 0}).state, core::TaskState::kSucceeded);
  EXPECT_EQ(loaded.tasks.at({1, 1}).state, core::TaskState::kRunning);
  EXPECT_EQ(loaded.tasks.at({1, 1}).lease, 24u);
  EXPECT_EQ(loaded.tasks.at({1, 1}).attempts, 3u);

  // Dispatched and done within one batch: no running row is left.
  Batch quick;
  quick.task_changes.push_back(running(1, 2, 1, "render-05", 25));
  quick.task_changes.push_back(task(1, 2, core::TaskState::kSucceeded, 1));
  quick.task_changes.push_back(task(1, 1, core::TaskState::kFailed, 3, "exit code 1"));
  ASSERT_TRUE(store->commit(quick).has_value());
  EXPECT_TRUE(running_attempt_rows().empty());
  store.reset();
  store = open();
  loaded = load(*store);
  EXPECT_EQ(loaded.tasks.at({1, 1}).state, core::TaskState::kFailed);
  EXPECT_EQ(loaded.tasks.at({1, 1}).error, "exit code 1");
  EXPECT_EQ(loaded.tasks.at({1, 2}).state, core::TaskState::kSucceeded);
}

// The store remembers where each running attempt's row is; a batch that fails
// must leave that memory as the file is, or a later change would leave an old
// attempt's row behind to come back as running at the next start.
TEST_F(SqliteStoreTest, AFailedBatchLeavesTheRunningAttemptsAsTheFileHasThem) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  batch.task_changes.push_back(running(1, 0, 1, "render-01", 11));
  batch.task_changes.push_back(running(1, 1, 1, "render-02", 12));
  ASSERT_TRUE(store->commit(batch).has_value());

  Batch failing;  // the second event_id clashes: nothing of the batch stays
  failing.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
  failing.task_changes.push_back(running(1, 1, 2, "render-03", 13));
  failing.events.push_back({"ev-1", 1'700'000'000'000, "info"});
  failing.events.push_back({"ev-1", 1'700'000'000'001, "info"});
  ASSERT_FALSE(store->commit(failing).has_value());
  Loaded loaded = load(*store);
  EXPECT_EQ(loaded.tasks.at({1, 0}).state, core::TaskState::kRunning);
  EXPECT_EQ(loaded.tasks.at({1, 1}).lease, 12u);

  Batch after;
  after.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
  after.task_changes.push_back(task(1, 1, core::TaskState::kSucceeded, 1));
  ASSERT_TRUE(store->commit(after).has_value());
  EXPECT_TRUE(running_attempt_rows().empty());
  store.reset();
  store = open();
  loaded = load(*store);
  EXPECT_EQ(loaded.tasks.at({1, 0}).state, core::TaskState::kSucceeded);
  EXPECT_EQ(loaded.tasks.at({1, 1}).state, core::TaskState::kSucceeded);
}

TEST_F(SqliteStoreTest, AForgottenJobTakesItsRunningAttemptsWithIt) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  batch.new_jobs.push_back(job(2));
  batch.task_changes.push_back(running(1, 0, 1, "render-01", 11));
  batch.task_changes.push_back(running(2, 0, 1, "render-02", 12));
  ASSERT_TRUE(store->commit(batch).has_value());
  Batch forget;
  forget.task_changes.push_back(running(1, 1, 1, "render-03", 13));  // in the same batch
  forget.forgotten_jobs.push_back(1);
  ASSERT_TRUE(store->commit(forget).has_value());
  EXPECT_EQ(running_attempt_rows(), (std::vector<std::string>{"2/0 attempts=1 worker=render-02"}));
  store.reset();
  store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.count({2, 0}), 1u);
}

// farmhand never writes two rows for one task, but a file may come with them
// (a hand-edited or older copy): the latest counts, the others go with the next
// commit, and none comes back once the task has moved on.
TEST_F(SqliteStoreTest, OfTwoRunningRowsForATaskTheLatestCountsAndTheOtherIsDeleted) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.task_changes.push_back(running(1, 0, 1, "render-01", 11));
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  exec_raw(
      "INSERT INTO running_attempts (job_id, idx, attempts, budget_base, lease, worker, error) "
      "VALUES (1, 0, 2, 0, 12, 'render-02', '')");
  // And a task left running in `tasks` by a farmhandd older than 0012.
  exec_raw(
      "INSERT INTO tasks (job_id, idx, state, attempts, lease, worker, error, budget_base) "
      "VALUES (1, 5, 2, 1, 15, 'render-09', '', 0)");
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 2u);
  EXPECT_EQ(loaded.tasks.at({1, 0}).worker, "render-02");
  EXPECT_EQ(loaded.tasks.at({1, 0}).attempts, 2u);
  EXPECT_EQ(loaded.tasks.at({1, 5}).state, core::TaskState::kRunning);
  EXPECT_EQ(loaded.tasks.at({1, 5}).worker, "render-09");

  Batch done;
  done.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 2));
  ASSERT_TRUE(store->commit(done).has_value());
  EXPECT_TRUE(running_attempt_rows().empty());
  store.reset();
  store = open();
  loaded = load(*store);
  EXPECT_EQ(loaded.tasks.at({1, 0}).state, core::TaskState::kSucceeded);
}

TEST_F(SqliteStoreTest, JobFlagsArePersisted) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(4));
  ASSERT_TRUE(store->commit(batch).has_value());
  Batch flags;
  flags.job_changes.push_back({4, true, true});
  ASSERT_TRUE(store->commit(flags).has_value());
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_TRUE(loaded.jobs[0].paused);
  EXPECT_TRUE(loaded.jobs[0].cancelled);
}

TEST_F(SqliteStoreTest, FailedBatchLeavesNothingBehind) {
  auto store = open();
  Batch first;
  first.new_jobs.push_back(job(1, "same-key"));
  ASSERT_TRUE(store->commit(first).has_value());
  Batch clash;
  clash.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
  clash.new_jobs.push_back(job(2, "same-key"));  // UNIQUE violation: the whole batch must go
  auto ok = store->commit(clash);
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().code, ErrorCode::kIo);
  Loaded loaded = load(*store);
  EXPECT_EQ(loaded.jobs.size(), 1u);
  EXPECT_TRUE(loaded.tasks.empty());
  // And the store still works afterwards.
  Batch next;
  next.new_jobs.push_back(job(3));
  EXPECT_TRUE(store->commit(next).has_value());
}

TEST_F(SqliteStoreTest, LogsAreReturnedPerTaskInAttemptOrder) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  batch.logs.push_back({1, 2, 2, "w2", "", "second", {}});
  batch.logs.push_back({1, 2, 1, "w1", "exit code 1 from x", "first", {}});
  batch.logs.push_back({1, 5, 1, "w1", "", "other task", {}});
  ASSERT_TRUE(store->commit(batch).has_value());
  auto one = store->logs(1, 2);
  ASSERT_TRUE(one.has_value());
  ASSERT_EQ(one->size(), 2u);
  EXPECT_EQ((*one)[0].text, "first");
  EXPECT_EQ((*one)[0].error, "exit code 1 from x");
  EXPECT_EQ((*one)[1].worker, "w2");
  auto all = store->logs(1, std::nullopt);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->size(), 3u);
}

TEST_F(SqliteStoreTest, WhenJobsAndAttemptsRanRoundTripsAndEachTasksLastAttemptSaysWhoAndWhen) {
  AttemptStats measured;
  measured.wall_s = 1.5;
  measured.cpu_user_s = 1;
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.new_jobs.push_back(job(2));
    batch.started.emplace_back(1, 1'700'000'000'500);
    LogRow first{1, 0, 1, "w1", "lease lost", "", {}, 1'700'000'001'000, 1'700'000'002'000};
    LogRow second{1, 0, 2, "w2", "", "done", measured, 1'700'000'003'000, 1'700'000'004'500};
    LogRow unknown{1, 2, 1, "old-worker", "", "no times", {}};
    for (const LogRow& row : {first, second, unknown}) batch.logs.push_back(row);
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 2u);
  EXPECT_EQ(loaded.jobs[0].started_unix_ms, 1'700'000'000'500);
  EXPECT_EQ(loaded.jobs[1].started_unix_ms, 0) << "a job not started yet";

  // Task 0: its second attempt; task 1: none; task 2: an attempt without times.
  auto last = store->last_attempts(1, 0, 5);
  ASSERT_TRUE(last.has_value()) << last.error().reason;
  ASSERT_EQ(last->size(), 2u);
  EXPECT_EQ((*last)[0].task, 0u);
  EXPECT_EQ((*last)[0].attempt, 2u);
  EXPECT_EQ((*last)[0].worker, "w2");
  EXPECT_EQ((*last)[0].started_unix_ms, 1'700'000'003'000);
  EXPECT_EQ((*last)[0].finished_unix_ms, 1'700'000'004'500);
  EXPECT_TRUE((*last)[0].text.empty()) << "the page reads no log text";
  EXPECT_EQ((*last)[1].task, 2u);
  EXPECT_EQ((*last)[1].worker, "old-worker");
  EXPECT_EQ((*last)[1].started_unix_ms, 0);
  EXPECT_EQ((*last)[1].finished_unix_ms, 0);
  auto none = store->last_attempts(2, 0, 5);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
}

TEST_F(SqliteStoreTest, AttemptStatsRoundTripWithTheirLogsAndSumPerJobAfterReopen) {
  AttemptStats exited;
  exited.wall_s = 12.5;
  exited.cpu_user_s = 30.25;
  exited.cpu_system_s = 1.5;
  exited.peak_rss_bytes = uint64_t{3} << 30;
  exited.exit_code = 0;
  AttemptStats killed;
  killed.wall_s = 2;
  killed.cpu_user_s = 0.5;
  killed.peak_rss_bytes = uint64_t{5} << 30;
  killed.exit_signal = "SIGKILL";
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.new_jobs.push_back(job(2));
    LogRow first{1, 0, 1, "w1", "killed by signal SIGKILL running render", "", killed};
    LogRow second{1, 0, 2, "w2", "", "done", exited};
    LogRow unknown{1, 3, 1, "old-worker", "", "from a worker that does not measure", {}};
    LogRow other{2, 0, 1, "w1", "", "", exited};
    for (const LogRow& row : {first, second, unknown, other}) batch.logs.push_back(row);
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  auto store = open();
  auto logs = store->logs(1, std::nullopt);
  ASSERT_TRUE(logs.has_value());
  ASSERT_EQ(logs->size(), 3u);
  EXPECT_EQ((*logs)[0].stats, killed);
  EXPECT_EQ((*logs)[1].stats, exited);
  EXPECT_EQ((*logs)[1].text, "done");
  EXPECT_FALSE((*logs)[2].stats) << "unknown must stay unknown, not zeros";

  // The last attempt that reported, per task of the range.
  auto last = store->last_attempt_stats(1, 0, 3);
  ASSERT_TRUE(last.has_value());
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].task, 0u);
  EXPECT_EQ((*last)[0].attempt, 2u);
  EXPECT_EQ((*last)[0].stats, exited);
  auto none = store->last_attempt_stats(1, 1, 3);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());

  std::map<core::JobId, JobUsage> usage;
  ASSERT_TRUE(store->load_job_usage([&](core::JobId id, const JobUsage& u) { usage[id] = u; }));
  ASSERT_EQ(usage.size(), 2u);
  EXPECT_EQ(usage[1].attempts, 2u);
  EXPECT_DOUBLE_EQ(usage[1].cpu_s, 30.25 + 1.5 + 0.5);
  EXPECT_EQ(usage[1].peak_rss_bytes, uint64_t{5} << 30);
  EXPECT_EQ(usage[2].attempts, 1u);
}

TEST_F(SqliteStoreTest, LogsOfTheBlocksSchemaAreUpgradedWithTheirUseUnknown) {
  // A state dir written by the broker before attempts' use was stored.
  std::string sql = "BEGIN;";
  for (int v = 0; v < 7; ++v) sql += migrations::kAll[v];
  sql +=
      "INSERT INTO jobs (id, spec, submitted_unix_ms) VALUES (7, x'00', 5);"
      "INSERT INTO task_logs (job_id, idx, attempt, worker, error, text) "
      "VALUES (7, 2, 1, 'render-03', '', 'old log');"
      "PRAGMA user_version=7; COMMIT;";
  exec_raw(sql);
  auto store = open();
  ASSERT_TRUE(store);
  auto logs = store->logs(7, std::nullopt);
  ASSERT_TRUE(logs.has_value());
  ASSERT_EQ(logs->size(), 1u);
  EXPECT_EQ((*logs)[0].text, "old log");
  EXPECT_FALSE((*logs)[0].stats);
  size_t jobs_with_usage = 0;
  ASSERT_TRUE(store->load_job_usage([&](core::JobId, const JobUsage&) { ++jobs_with_usage; }));
  EXPECT_EQ(jobs_with_usage, 0u);
}

TEST_F(SqliteStoreTest, FinishTimesPersistAndForgottenJobsLeaveNoRowsBehind) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1, "key-1"));
    batch.new_jobs.push_back(job(2));
    batch.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
    batch.task_changes.push_back(task(2, 0, core::TaskState::kSucceeded, 1));
    batch.logs.push_back({1, 0, 1, "w1", "", "log of job 1", {}});
    batch.events.push_back({"ev-1", 1'700'000'000'000, "info"});
    batch.events.push_back({"ev-2", 1'700'000'000'001, "info"});
    batch.finished.emplace_back(1, 1'700'000'000'500);
    batch.finished.emplace_back(2, 1'700'000'000'600);
    ASSERT_TRUE(store->commit(batch).has_value());
    Batch reopened;  // a retry reopens job 2
    reopened.finished.emplace_back(2, 0);
    ASSERT_TRUE(store->commit(reopened).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 2u);
  EXPECT_EQ(loaded.jobs[0].finished_unix_ms, 1'700'000'000'500);
  EXPECT_EQ(loaded.jobs[1].finished_unix_ms, 0);

  Batch forget;
  forget.forgotten_jobs.push_back(1);
  forget.forgotten_events.push_back("ev-1");
  ASSERT_TRUE(store->commit(forget).has_value());
  loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.jobs[0].id, 2u);
  EXPECT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.count({2, 0}), 1u);
  auto logs = store->logs(1, std::nullopt);
  ASSERT_TRUE(logs.has_value());
  EXPECT_TRUE(logs->empty());
  std::vector<std::string> events;
  ASSERT_TRUE(store->load_events([&](EventRow&& e) { events.push_back(e.event_id); }));
  EXPECT_EQ(events, (std::vector<std::string>{"ev-2"}));
  // Its idempotency key is free again.
  Batch reuse;
  reuse.new_jobs.push_back(job(3, "key-1"));
  EXPECT_TRUE(store->commit(reuse).has_value());
}

TEST_F(SqliteStoreTest, LiveSpecChangesAndBlocksPersistAndLeaveWithTheirJob) {
  auto blocks_of = [](Store& store) {
    std::vector<std::string> out;
    EXPECT_TRUE(store.load_blocks([&](core::WorkerBlock&& b) {
      out.push_back(fmt::format("{}:{}:{}:{}", b.job, b.worker, b.failures, b.reason));
    }));
    return out;
  };
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.new_jobs.push_back(job(2));
    batch.spec_changes.push_back({2, "changed spec"});  // in the batch that creates it
    batch.blocks.push_back({{1, "render-03", 3, "exit code 139"}, true});
    batch.blocks.push_back({{1, "render-04", 3, "timed out after 60 s"}, true});
    batch.blocks.push_back({{2, "render-03", 4, "exit code 1"}, true});
    ASSERT_TRUE(store->commit(batch).has_value());
    Batch unblock;
    unblock.blocks.push_back({{1, "render-04", 3, ""}, false});
    ASSERT_TRUE(store->commit(unblock).has_value());
  }
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 2u);
  EXPECT_EQ(loaded.jobs[0].spec, job(1).spec);
  EXPECT_EQ(loaded.jobs[1].spec, "changed spec");
  EXPECT_EQ(blocks_of(*store),
            (std::vector<std::string>{"1:render-03:3:exit code 139", "2:render-03:4:exit code 1"}));
  Batch forget;
  forget.forgotten_jobs.push_back(1);
  ASSERT_TRUE(store->commit(forget).has_value());
  EXPECT_EQ(blocks_of(*store), (std::vector<std::string>{"2:render-03:4:exit code 1"}));
}

TEST_F(SqliteStoreTest, StateOfTheEventsSchemaIsUpgradedKeepingItsJobs) {
  {  // a state dir written by the broker before finish times were stored
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    const std::string sql = "BEGIN;" + std::string(migrations::kAll[0]) +
                            std::string(migrations::kAll[1]) +
                            "INSERT INTO jobs (id, spec, submitted_unix_ms) VALUES (7, x'00', 5);"
                            "PRAGMA user_version=2; COMMIT;";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = open();
  ASSERT_TRUE(store);
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.jobs[0].id, 7u);
  EXPECT_EQ(loaded.jobs[0].finished_unix_ms, 0);
  Batch batch;
  batch.finished.emplace_back(7, 1234);
  EXPECT_TRUE(store->commit(batch).has_value());
}

TEST_F(SqliteStoreTest, StateOfTheRetentionSchemaIsUpgradedKeepingItsTasks) {
  // A state dir written by the broker before attempt budgets were stored.
  exec_raw("BEGIN;" + std::string(migrations::kAll[0]) + std::string(migrations::kAll[1]) +
           std::string(migrations::kAll[2]) +
           "INSERT INTO jobs (id, spec, submitted_unix_ms) VALUES (7, x'00', 5);"
           "INSERT INTO tasks (job_id, idx, state, attempts, lease, worker, error) "
           "VALUES (7, 2, 5, 3, 0, 'render-03', 'exit code 1');"
           "PRAGMA user_version=3; COMMIT;");
  auto store = open();
  ASSERT_TRUE(store);
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  const TaskRow& dead = loaded.tasks.at({7, 2});
  EXPECT_EQ(dead.state, core::TaskState::kDead);
  EXPECT_EQ(dead.attempts, 3u);
  EXPECT_EQ(dead.budget_base, 0u);
  EXPECT_EQ(dead.worker, "render-03");
  EXPECT_EQ(dead.error, "exit code 1");
  // A retry of it is written in the new column.
  Batch batch;
  core::TaskChange retried = task(7, 2, core::TaskState::kQueued, 3);
  retried.budget_base = 3;
  batch.task_changes.push_back(retried);
  ASSERT_TRUE(store->commit(batch).has_value());
  EXPECT_EQ(load(*store).tasks.at({7, 2}).budget_base, 3u);
}

// A process killed in the middle of a transaction (as kill -9 of the broker
// would) leaves the last committed state intact and nothing of the rest.
TEST_F(SqliteStoreTest, WriterKilledMidTransactionLosesOnlyUncommittedWork) {
  {
    auto store = open();
    Batch batch;
    batch.new_jobs.push_back(job(1));
    batch.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) _exit(2);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE;", nullptr, nullptr, nullptr);
    for (int i = 1; i < 5000; ++i) {
      std::string sql = "INSERT INTO tasks (job_id, idx, state, attempts) VALUES (1, " +
                        std::to_string(i) + ", 3, 1)";
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    }
    // Force pages of the open transaction into the WAL, then die without COMMIT.
    sqlite3_exec(db, "PRAGMA cache_size=1; UPDATE tasks SET attempts = 9;", nullptr, nullptr,
                 nullptr);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto store = open();
  Loaded loaded = load(*store);
  ASSERT_EQ(loaded.tasks.size(), 1u);
  EXPECT_EQ(loaded.tasks.at({1, 0}).attempts, 1u);
}

TEST_F(SqliteStoreTest, ActionKeysRoundTripAndOldOnesAreForgotten) {
  {
    auto store = open();
    Batch batch;
    batch.action_keys.push_back({"old", 7, std::string("reply\0one", 9), 1000});
    batch.action_keys.push_back({"new", 0xfedcba9876543210ULL, "reply two", 5000});
    // A killed attempt's lease stays on its queued task's row.
    batch.task_changes.push_back({1, 0, core::TaskState::kQueued, 2, 1, 0xabcdef, "", ""});
    ASSERT_TRUE(store->commit(batch).has_value());
  }
  auto store = open();
  std::map<std::string, ActionKeyRow> keys;
  ASSERT_TRUE(store
                  ->load_action_keys([&](ActionKeyRow&& row) {
                    std::string key = row.key;
                    keys[key] = std::move(row);
                  })
                  .has_value());
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys["old"].reply, std::string("reply\0one", 9));
  EXPECT_EQ(keys["old"].stored_unix_ms, 1000);
  EXPECT_EQ(keys["new"].fingerprint, 0xfedcba9876543210ULL);
  EXPECT_EQ(load(*store).tasks.at({1, 0}).lease, 0xabcdefu);

  Batch forget;
  forget.forget_action_keys_before = 2000;
  ASSERT_TRUE(store->commit(forget).has_value());
  keys.clear();
  ASSERT_TRUE(store
                  ->load_action_keys([&](ActionKeyRow&& row) {
                    std::string key = row.key;
                    keys[key] = std::move(row);
                  })
                  .has_value());
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.count("new"));
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefusedWithAClearReason) {
  { auto store = open(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = SqliteStore::open(path_, "full");
  ASSERT_FALSE(store.has_value());
  EXPECT_NE(store.error().reason.find("newer than this farmhandd"), std::string::npos)
      << store.error().reason;
}

TEST_F(SqliteStoreTest, BackupIsAConsistentReadableCopy) {
  auto store = open();
  Batch batch;
  batch.new_jobs.push_back(job(1));
  batch.task_changes.push_back(task(1, 0, core::TaskState::kSucceeded, 1));
  ASSERT_TRUE(store->commit(batch).has_value());
  std::string copy = (dir_ / "backup.db").string();
  ASSERT_TRUE(store->backup_to(copy).has_value());
  auto restored = SqliteStore::open(copy, "full");
  ASSERT_TRUE(restored.has_value());
  Loaded loaded = load(**restored);
  EXPECT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.tasks.size(), 1u);
}

TEST_F(SqliteStoreTest, UnwritableLocationIsAOneLineError) {
  auto store = SqliteStore::open("/proc/no-such-dir/farmhand.db", "full");
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().reason.find('\n'), std::string::npos);
  EXPECT_NE(store.error().reason.find("/proc/no-such-dir/farmhand.db"), std::string::npos);
}

// With the flush left to the caller, a commit is written (in the WAL, held by
// the OS) when commit() returns: a writer killed before it flushes loses
// nothing it committed. flush() then fdatasyncs the WAL.
TEST_F(SqliteStoreTest, ACommitLeftToTheCallerToFlushSurvivesTheWriterBeingKilled) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto store = SqliteStore::open(path_, "full", SqliteStore::Flush::kByCaller);
    if (!store) _exit(2);
    Batch batch;
    batch.new_jobs.push_back(job(7));
    batch.task_changes.push_back(task(7, 0, core::TaskState::kRunning, 1));
    if (!(*store)->commit(batch)) _exit(3);
    ::kill(::getpid(), SIGKILL);  // before any flush
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited " << WEXITSTATUS(status);
  auto store = SqliteStore::open(path_, "full", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(store);
  Loaded loaded = load(**store);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.jobs[0].id, 7u);
  EXPECT_EQ(loaded.tasks.size(), 1u);
  EXPECT_TRUE((*store)->flush());
}

TEST_F(SqliteStoreTest, AFailedFlushNamesTheWal) {
  auto store = SqliteStore::open(path_, "full", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(store);
  Batch batch;
  batch.new_jobs.push_back(job(1));
  ASSERT_TRUE((*store)->commit(batch));
  ASSERT_TRUE((*store)->flush());
  // A new file at the WAL's path is flushed by path; one that cannot be (a
  // FIFO: fdatasync fails with EINVAL, as a failing disk's does with EIO)
  // makes the flush fail, naming it.
  const std::string wal = path_ + "-wal";
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::rename(fifo.c_str(), wal.c_str()), 0);
  auto failed = (*store)->flush();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().reason, "state store flush failed: Invalid argument (" + wal + ")");
}

// With the caller flushing (the broker), the WAL is checkpointed by the
// store's own thread, not inside commit(): SQLite's automatic checkpoint is
// off, so without that thread no checkpoint would ever complete and the WAL
// would grow for as long as the broker runs. Every commit is still there.
TEST_F(SqliteStoreTest, TheWalIsCheckpointedByAThreadOfItsOwn) {
  auto store = SqliteStore::open(path_, "full", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(store);
  constexpr core::JobId kJobs = 150;  // past 2,000 WAL frames in all
  constexpr core::TaskIndex kTasks = 400;
  for (core::JobId id = 1; id <= kJobs; ++id) {
    Batch batch;
    batch.new_jobs.push_back(job(id));
    for (core::TaskIndex t = 0; t < kTasks; ++t) {
      batch.task_changes.push_back(task(id, t, core::TaskState::kQueued, 0, std::string(64, 'e')));
    }
    ASSERT_TRUE((*store)->commit(batch));
    ASSERT_TRUE((*store)->flush());
  }
  // Awaited, not timed: the thread runs when the scheduler lets it.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((*store)->checkpoints_completed() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE((*store)->checkpoints_completed(), 1u);
  // Copied back for real: the database file holds the rows while the store is
  // open (it stayed one page, and the WAL grew without end, when the thread's
  // connection had not yet found the WAL: SQLite reported -1 frames as done).
  EXPECT_GT(fs::file_size(path_), 1'000'000u);
  Loaded loaded = load(**store);
  EXPECT_EQ(loaded.jobs.size(), kJobs);
  EXPECT_EQ(loaded.tasks.size(), size_t{kJobs} * kTasks);
  store->reset();
  auto again = SqliteStore::open(path_, "full", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(again);
  Loaded reloaded = load(**again);
  EXPECT_EQ(reloaded.jobs.size(), kJobs);
  EXPECT_EQ(reloaded.tasks.size(), size_t{kJobs} * kTasks);
}

TEST_F(SqliteStoreTest, AStoreDurableByItselfHasNothingToFlush) {
  auto store = open();  // full, flushed in commit()
  ASSERT_TRUE(store);
  Batch batch;
  batch.new_jobs.push_back(job(1));
  ASSERT_TRUE(store->commit(batch));
  const std::string wal = path_ + "-wal";
  ASSERT_EQ(::unlink(wal.c_str()), 0);
  ASSERT_EQ(::mkfifo(wal.c_str(), 0600), 0);
  EXPECT_TRUE(store->flush()) << "flushed a WAL it should have left alone";
}

}  // namespace
}  // namespace farmhand::daemon
