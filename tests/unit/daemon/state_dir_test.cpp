// StateDir: the lock that keeps a second broker off a state dir, and the marker that
// keeps a lost database from silently starting an empty farm. Real files, real SQLite.
#include "daemon/state_dir.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace farmhand::daemon {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

std::string reason_of(const Result<std::unique_ptr<StateDir>>& r) {
  return r ? "" : r.error().reason;
}

std::string reason_of(const Result<std::unique_ptr<SqliteStore>>& r) {
  return r ? "" : r.error().reason;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A state dir whose database was created and migrated once, then closed.
void make_farm(const std::string& dir) {
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  ASSERT_TRUE(store) << reason_of(store);
}

TEST(StateDirTest, OpenCreatesTheDirAndWritesOurPidIntoTheLockFile) {
  TempDir tmp;
  const std::string dir = tmp.file("a/b/state");
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  EXPECT_TRUE(fs::is_directory(dir));
  std::ifstream lock(dir + "/farmhand.lock");
  pid_t pid = 0;
  lock >> pid;
  EXPECT_EQ(pid, getpid());
}

TEST(StateDirTest, SecondOpenIsRefusedNamingTheHoldersPid) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  auto first = StateDir::open(dir);
  ASSERT_TRUE(first) << reason_of(first);
  auto second = StateDir::open(dir);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(second.error().reason,
            "state dir " + dir + " is in use by farmhandd pid " + std::to_string(getpid()));
  // The refused open left the holder's pid in place.
  std::ifstream lock(dir + "/farmhand.lock");
  pid_t pid = 0;
  lock >> pid;
  EXPECT_EQ(pid, getpid());
}

TEST(StateDirTest, LockIsFreeAgainOnceTheHolderIsGone) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  { ASSERT_TRUE(StateDir::open(dir)); }
  auto again = StateDir::open(dir);
  EXPECT_TRUE(again) << reason_of(again);
}

TEST(StateDirTest, ChildProcessesDoNotInheritTheLock) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  // A long-lived child (a local worker, a task) started while the lock is held.
  pid_t child = -1;
  char sleep_bin[] = "/bin/sleep";
  char seconds[] = "600";
  char* argv[] = {sleep_bin, seconds, nullptr};
  ASSERT_EQ(posix_spawn(&child, sleep_bin, nullptr, nullptr, argv, environ), 0);
  state->reset();  // the broker is gone; its child is not
  auto next = StateDir::open(dir);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(next) << reason_of(next);
}

TEST(StateDirTest, FreshDirCreatesTheDatabaseAndTheMarker) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  EXPECT_FALSE(fs::exists((*state)->marker_path()));
  auto store = (*state)->open_store("full");
  ASSERT_TRUE(store) << reason_of(store);
  EXPECT_TRUE(fs::exists((*state)->marker_path()));
  EXPECT_GT(fs::file_size((*state)->database_path()), 0u);
}

TEST(StateDirTest, EmptyDatabaseWithTheMarkerIsRefusedWithHowToRecover) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  make_farm(dir);
  fs::resize_file(dir + "/farmhand.db", 0);
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kCorrupt);
  const std::string& reason = store.error().reason;
  EXPECT_NE(reason.find(dir + "/farmhand.db is empty"), std::string::npos) << reason;
  EXPECT_NE(reason.find("farmhand admin backup"), std::string::npos) << reason;
  EXPECT_NE(reason.find("remove " + dir + "/farmhand.state"), std::string::npos) << reason;
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
  // Nothing was written over the evidence.
  EXPECT_EQ(fs::file_size(dir + "/farmhand.db"), 0u);
}

TEST(StateDirTest, MissingDatabaseWithTheMarkerIsRefused) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  make_farm(dir);
  fs::remove(dir + "/farmhand.db");
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().reason.find(dir + "/farmhand.db is missing"), std::string::npos)
      << store.error().reason;
  EXPECT_FALSE(fs::exists(dir + "/farmhand.db"));
}

TEST(StateDirTest, RemovingTheMarkerStartsAnEmptyFarmOnPurpose) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  make_farm(dir);
  fs::remove(dir + "/farmhand.db");
  fs::remove(dir + "/farmhand.state");
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  EXPECT_TRUE(store) << reason_of(store);
  EXPECT_TRUE(fs::exists(dir + "/farmhand.state"));
}

TEST(StateDirTest, DatabaseFromBeforeTheMarkerOpensAndGetsOne) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  fs::create_directories(dir);
  { ASSERT_TRUE(SqliteStore::open(dir + "/farmhand.db", "full")); }
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  EXPECT_TRUE(store) << reason_of(store);
  EXPECT_TRUE(fs::exists(dir + "/farmhand.state"));
}

TEST(StateDirTest, FileThatIsNotADatabaseIsRefusedNamingIt) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  fs::create_directories(dir);
  std::string junk;
  for (int i = 0; i < 200; ++i) junk += "this is not a sqlite database\n";
  write_file(dir + "/farmhand.db", junk);
  auto state = StateDir::open(dir);
  ASSERT_TRUE(state) << reason_of(state);
  auto store = (*state)->open_store("full");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kCorrupt);
  const std::string& reason = store.error().reason;
  EXPECT_NE(reason.find("state file " + dir + "/farmhand.db is damaged"), std::string::npos)
      << reason;
  EXPECT_NE(reason.find("farmhand admin backup"), std::string::npos) << reason;
  EXPECT_FALSE(fs::exists(dir + "/farmhand.state"));
}

TEST(StateDirTest, CorruptTablesAreReportedNamingTheFileWhenRead) {
  TempDir tmp;
  const std::string dir = tmp.file("state");
  fs::create_directories(dir);
  const std::string db = dir + "/farmhand.db";
  {
    auto store = SqliteStore::open(db, "full");
    ASSERT_TRUE(store) << reason_of(store);
    Batch batch;
    for (core::JobId id = 1; id <= 200; ++id) {
      JobRow row;
      row.id = id;
      row.spec = std::string(300, 'x');
      batch.new_jobs.push_back(row);
    }
    ASSERT_TRUE((*store)->commit(batch));
  }
  // Keep page 1 (header and schema), scribble over every page after it.
  const auto size = fs::file_size(db);
  ASSERT_GT(size, 8192u);
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    f << std::string(size - 4096, '\x5a');
  }
  auto store = SqliteStore::open(db, "full");
  Result<void> loaded =
      store ? (*store)->load([](JobRow&&) {}, [](TaskRow&&) {}) : Result<void>(fail(store.error()));
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, ErrorCode::kCorrupt) << loaded.error().reason;
  EXPECT_NE(loaded.error().reason.find("state file " + db + " is damaged"), std::string::npos)
      << loaded.error().reason;
}

}  // namespace
}  // namespace farmhand::daemon
