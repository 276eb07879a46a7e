#include "workers/work_dir.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::worker {
namespace {

wire::TaskResult result(uint64_t job, uint64_t task, uint64_t lease, const std::string& log) {
  wire::TaskResult r;
  r.mutable_ref()->set_job_id(job);
  r.mutable_ref()->set_task(task);
  r.mutable_ref()->set_lease(lease);
  r.set_attempt(1);
  r.set_succeeded(true);
  r.set_log_tail(log);
  return r;
}

TEST(WorkDirLockTest, SecondLockOnOneDirFailsNamingTheHoldersPid) {
  testing_support::TempDir tmp;
  auto first = WorkDirLock::acquire(tmp.file("work"));
  ASSERT_TRUE(first) << first.error().reason;
  auto second = WorkDirLock::acquire(tmp.file("work"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().reason,
            "work dir " + tmp.file("work") + " is in use by another worker (pid " +
                std::to_string(getpid()) + "); give this worker its own --work-dir");
}

TEST(WorkDirLockTest, ReleasedLockCanBeTakenAgain) {
  testing_support::TempDir tmp;
  {
    auto first = WorkDirLock::acquire(tmp.file("work"));
    ASSERT_TRUE(first);
  }
  auto again = WorkDirLock::acquire(tmp.file("work"));
  EXPECT_TRUE(again) << again.error().reason;
}

TEST(ResultStoreTest, SavedResultsAreLoadedUntilRemoved) {
  testing_support::TempDir tmp;
  ResultStore store(tmp.path());
  auto a = result(1, 0, 0xabc, "first\n");
  auto b = result(2, 5, 0xdef, "second\n");
  ASSERT_TRUE(store.save({&a, &b}));

  auto loaded = ResultStore(tmp.path()).load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->results.size(), 2u);
  std::vector<std::string> logs;
  for (const auto& r : loaded->results) logs.push_back(r.log_tail());
  std::sort(logs.begin(), logs.end());
  EXPECT_EQ(logs, (std::vector<std::string>{"first\n", "second\n"}));

  store.remove(a.ref());
  loaded = store.load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->results.size(), 1u);
  EXPECT_EQ(loaded->results[0].ref().job_id(), 2u);
}

TEST(ResultStoreTest, InterruptedWritesAndGarbageAreDroppedNotLoaded) {
  testing_support::TempDir tmp;
  ResultStore store(tmp.path());
  auto a = result(1, 0, 7, "kept\n");
  ASSERT_TRUE(store.save({&a}));
  // A crash before the rename leaves a temporary file; another file is garbage.
  std::ofstream(store.path(result(3, 0, 9, "").ref()) + ".tmp") << "half";
  std::ofstream(store.path(result(4, 0, 9, "").ref())) << "not a protobuf \xff\xff\xff";

  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->results.size(), 1u);
  EXPECT_EQ(loaded->results[0].log_tail(), "kept\n");
  EXPECT_EQ(loaded->dropped.size(), 1u);
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(tmp.file("results"))) {
    left.push_back(e.path().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{store.path(a.ref())});
}

}  // namespace
}  // namespace farmhand::worker
