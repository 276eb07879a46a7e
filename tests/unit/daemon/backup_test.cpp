// Backup targets (check_backup_target) and the copy itself (backup_database): a
// backup never lands in the state dir, outside the configured places, or over a
// file that was not meant to be replaced. Real files, real SQLite.
#include "daemon/backup.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/temp_dir.h"
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include "daemon/store/sqlite_store.h"

namespace farmhand::daemon {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

int64_t job_count(const std::string& db) {
  sqlite3* conn = nullptr;
  int64_t count = -1;
  if (sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(conn, "SELECT count(*) FROM jobs", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      count = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(conn);
  return count;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    state_ = tmp_.file("state");
    fs::create_directories(state_);
    auto store = SqliteStore::open(state_ + "/farmhand.db", "full");
    ASSERT_TRUE(store) << store.error().reason;
    store_ = std::move(*store);
    Batch batch;
    for (core::JobId id = 1; id <= 3; ++id) {
      JobRow row;
      row.id = id;
      row.spec = "spec";
      batch.new_jobs.push_back(row);
    }
    ASSERT_TRUE(store_->commit(batch));  // in the WAL, like a running broker's last turns
    policy_.state_dir = state_;
  }

  std::string refused(const std::string& target) {
    auto r = check_backup_target(target, policy_);
    return r ? "accepted" : r.error().reason;
  }

  TempDir tmp_;
  std::string state_;
  std::unique_ptr<SqliteStore> store_;
  BackupPolicy policy_;
};

TEST_F(BackupTest, EveryNameInTheStateDirIsRefusedHoweverItIsSpelled) {
  fs::create_directories(state_ + "/sub");
  fs::create_symlink(state_, tmp_.file("alias"));
  for (const std::string& target :
       {state_ + "/farmhand.db", state_ + "/farmhand.db-wal", state_ + "/farmhand.db-shm",
        state_ + "/copy.db", state_ + "/sub/copy.db", state_ + "/./sub/../farmhand.db-wal",
        tmp_.file("alias") + "/farmhand.db-wal", tmp_.file("alias/sub/x.db")}) {
    EXPECT_EQ(refused(target), "backup path " + target + " is in the state dir " + state_ +
                                   "; back up to another directory")
        << target;
  }
  // Even with force.
  policy_.force = true;
  EXPECT_NE(refused(state_ + "/farmhand.db-wal"), "accepted");
}

TEST_F(BackupTest, WithNoBackupDirOrAllowedRootsAnyOtherDirectoryIsFine) {
  auto r = check_backup_target(tmp_.file("copy.db"), policy_);
  ASSERT_TRUE(r) << r.error().reason;
  EXPECT_EQ(*r, fs::canonical(tmp_.path()).string() + "/copy.db");
}

TEST_F(BackupTest, TargetMustLieUnderTheBackupDirOrAnAllowedRoot) {
  for (const char* d : {"backups/daily", "roots/show", "elsewhere"}) {
    fs::create_directories(tmp_.file(d));
  }
  policy_.backup_dir = tmp_.file("backups");
  policy_.allowed_roots = {tmp_.file("roots")};
  EXPECT_EQ(refused(tmp_.file("backups/a.db")), "accepted");
  EXPECT_EQ(refused(tmp_.file("backups/daily/a.db")), "accepted");
  EXPECT_EQ(refused(tmp_.file("roots/show/a.db")), "accepted");
  const std::string outside = tmp_.file("elsewhere/a.db");
  EXPECT_EQ(refused(outside), "backup path " + outside +
                                  " is outside broker.backup_dir and broker.allowed_roots (" +
                                  tmp_.file("backups") + ", " + tmp_.file("roots") + ")");
  EXPECT_NE(refused(tmp_.file("backups/../elsewhere/a.db")), "accepted");
  // A symlink inside the backup dir does not lead out of it.
  fs::create_symlink(tmp_.file("elsewhere"), tmp_.file("backups/escape"));
  EXPECT_NE(refused(tmp_.file("backups/escape/a.db")), "accepted");
}

TEST_F(BackupTest, ExistingTargetIsRefusedUnlessForced) {
  const std::string target = tmp_.file("copy.db");
  write_file(target, "precious");
  EXPECT_EQ(refused(target), "backup path " + target + " exists; add --force to replace it");
  EXPECT_FALSE(backup_database(state_ + "/farmhand.db", target, policy_));
  EXPECT_EQ(read_all(target), "precious");
  policy_.force = true;
  EXPECT_EQ(refused(target), "accepted");
}

TEST_F(BackupTest, RelativeMissingDirAndDirectoryTargetsAreRefused) {
  EXPECT_EQ(refused("copy.db"), "backup path must be absolute");
  EXPECT_EQ(refused(tmp_.file("nodir/copy.db")), "cannot back up to " + tmp_.file("nodir/copy.db") +
                                                     ": no directory " + tmp_.file("nodir") +
                                                     " on the broker's host");
  fs::create_directories(tmp_.file("adir"));
  policy_.force = true;
  EXPECT_EQ(refused(tmp_.file("adir")), "backup path " + tmp_.file("adir") + " is a directory");
}

TEST_F(BackupTest, CopyHoldsTheCommittedJobsAndLeavesNoTemporaryFile) {
  fs::create_directories(tmp_.file("out"));
  const std::string target = tmp_.file("out/copy.db");
  auto bytes = backup_database(state_ + "/farmhand.db", target, policy_);
  ASSERT_TRUE(bytes) << bytes.error().reason;
  EXPECT_EQ(*bytes, fs::file_size(target));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(tmp_.file("out"))) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"copy.db"});
  EXPECT_EQ(job_count(target), 3);
}

TEST_F(BackupTest, ForcedCopyReplacesASymlinkAtTheTargetWithoutFollowingIt) {
  const std::string victim = tmp_.file("victim.txt");
  write_file(victim, "not yours");
  const std::string target = tmp_.file("copy.db");
  fs::create_symlink(victim, target);
  policy_.force = true;
  auto bytes = backup_database(state_ + "/farmhand.db", target, policy_);
  ASSERT_TRUE(bytes) << bytes.error().reason;
  EXPECT_FALSE(fs::is_symlink(target));
  EXPECT_EQ(job_count(target), 3);
  EXPECT_EQ(read_all(victim), "not yours");
}

TEST_F(BackupTest, ForcedCopyReplacesAnExistingFile) {
  const std::string target = tmp_.file("copy.db");
  write_file(target, "old");
  policy_.force = true;
  auto bytes = backup_database(state_ + "/farmhand.db", target, policy_);
  ASSERT_TRUE(bytes) << bytes.error().reason;
  EXPECT_EQ(job_count(target), 3);
}

TEST_F(BackupTest, CopyIntoTheStateDirIsRefusedAndTheWalIsUntouched) {
  const std::string wal = state_ + "/farmhand.db-wal";
  const std::string before = read_all(wal);
  ASSERT_FALSE(before.empty());
  policy_.force = true;
  EXPECT_FALSE(backup_database(state_ + "/farmhand.db", wal, policy_));
  EXPECT_EQ(read_all(wal), before);
}

TEST_F(BackupTest, RenameIntoPlaceNeverReplacesAFileThatAppearedUnlessAskedTo) {
  const std::string dir = tmp_.file("out");
  fs::create_directories(dir);
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir_fd, 0);
  write_file(dir + "/.copy.partial", "new copy");
  write_file(dir + "/copy.db", "appeared meanwhile");

  auto refused = rename_into_place(dir_fd, ".copy.partial", "copy.db", false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(read_all(dir + "/copy.db"), "appeared meanwhile");
  EXPECT_EQ(read_all(dir + "/.copy.partial"), "new copy");

  auto replaced = rename_into_place(dir_fd, ".copy.partial", "copy.db", true);
  EXPECT_TRUE(replaced) << replaced.error().reason;
  EXPECT_EQ(read_all(dir + "/copy.db"), "new copy");
  EXPECT_FALSE(fs::exists(dir + "/.copy.partial"));

  write_file(dir + "/.next.partial", "next");
  auto fresh = rename_into_place(dir_fd, ".next.partial", "next.db", false);
  EXPECT_TRUE(fresh) << fresh.error().reason;
  EXPECT_EQ(read_all(dir + "/next.db"), "next");
  ::close(dir_fd);
}

}  // namespace
}  // namespace farmhand::daemon
