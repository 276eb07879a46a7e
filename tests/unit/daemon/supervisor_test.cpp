// Supervisor against a FakeSpawner: how the broker starts, restarts and stops
// its local workers, with made-up time and no real process.
#include "daemon/supervisor.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/support/fake_spawner.h"
#include <gtest/gtest.h>
#include <signal.h>

namespace farmhand::daemon {
namespace {

using namespace std::chrono_literals;
using farmhand::testing::FakeSpawner;
using Time = Supervisor::Clock::time_point;

const Time kStart = Time{} + 1h;

Supervisor::Options options(int count) {
  Supervisor::Options o;
  o.worker_binary = "/opt/farmhand/bin/farmhand-worker";
  o.broker_endpoint = "ipc:///run/farmhand/workers";
  o.state_dir = "/var/lib/farmhand";
  o.count = count;
  o.env = {"FARMHAND_TEST=1"};
  return o;
}

bool has_arg_pair(const common::SpawnSpec& spec, const std::string& flag,
                  const std::string& value) {
  for (size_t i = 0; i + 1 < spec.argv.size(); ++i) {
    if (spec.argv[i] == flag && spec.argv[i + 1] == value) return true;
  }
  return false;
}

TEST(SupervisorTest, LocalWorkerIsSpawnedWithItsNameWorkDirAndDiesWithTheBroker) {
  FakeSpawner spawner;
  Supervisor supervisor(options(2), spawner);
  supervisor.maintain(kStart);

  ASSERT_EQ(spawner.specs().size(), 2u);
  const common::SpawnSpec& first = spawner.specs()[0];
  EXPECT_EQ(first.argv.front(), "/opt/farmhand/bin/farmhand-worker");
  EXPECT_TRUE(has_arg_pair(first, "--broker", "ipc:///run/farmhand/workers"));
  EXPECT_TRUE(has_arg_pair(first, "--name", "local-1"));
  EXPECT_TRUE(has_arg_pair(first, "--work-dir", "/var/lib/farmhand/workers/local-1"));
  EXPECT_TRUE(has_arg_pair(spawner.specs()[1], "--name", "local-2"));
  EXPECT_EQ(first.env, std::vector<std::string>{"FARMHAND_TEST=1"});
  EXPECT_EQ(first.parent_death_signal, SIGTERM);
  EXPECT_EQ(supervisor.alive(), 2);
  EXPECT_FALSE(supervisor.next_deadline());
  EXPECT_FALSE(has_arg_pair(first, "--cores", "0")) << "detected unless the config says";
}

TEST(SupervisorTest, LocalWorkersOfferTheCoresAndMemoryTheConfigGives) {
  FakeSpawner spawner;
  Supervisor::Options o = options(1);
  o.cores = 8;
  o.memory = uint64_t{16} << 30;
  Supervisor supervisor(o, spawner);
  supervisor.maintain(kStart);
  ASSERT_EQ(spawner.specs().size(), 1u);
  EXPECT_TRUE(has_arg_pair(spawner.specs()[0], "--cores", "8"));
  EXPECT_TRUE(has_arg_pair(spawner.specs()[0], "--memory", std::to_string(uint64_t{16} << 30)));
}

TEST(SupervisorTest, WorkerThatCannotBeSpawnedIsRetriedAfterTheLongestBackoff) {
  FakeSpawner spawner;
  spawner.fail_next(Error{ErrorCode::kNotFound,
                          "cannot start '/opt/farmhand/bin/farmhand-worker': No such file"});
  Supervisor supervisor(options(2), spawner);

  supervisor.maintain(kStart);
  EXPECT_EQ(spawner.specs().size(), 2u);  // local-1 failed, local-2 started
  EXPECT_EQ(supervisor.alive(), 1);
  ASSERT_TRUE(supervisor.next_deadline());
  EXPECT_EQ(*supervisor.next_deadline(), kStart + 30s);

  supervisor.maintain(kStart + 29s);
  EXPECT_EQ(spawner.specs().size(), 2u);  // not yet due

  supervisor.maintain(kStart + 30s);
  ASSERT_EQ(spawner.specs().size(), 3u);
  EXPECT_TRUE(has_arg_pair(spawner.specs()[2], "--name", "local-1"));
  EXPECT_EQ(supervisor.alive(), 2);
}

TEST(SupervisorTest, WorkerThatKeepsDyingIsRestartedWithGrowingDelays) {
  FakeSpawner spawner;
  Supervisor supervisor(options(1), spawner);
  supervisor.maintain(kStart);
  ASSERT_EQ(spawner.pids().size(), 1u);

  // Dies a second after it started: a crash loop, so the restart waits 0.5 s.
  spawner.exit(spawner.pids()[0], FakeSpawner::exited(1));
  supervisor.maintain(kStart + 1s);
  EXPECT_EQ(supervisor.alive(), 0);
  ASSERT_TRUE(supervisor.next_deadline());
  EXPECT_EQ(*supervisor.next_deadline(), kStart + 1s + 500ms);
  supervisor.maintain(kStart + 1s + 499ms);
  EXPECT_EQ(spawner.pids().size(), 1u);
  supervisor.maintain(kStart + 1s + 500ms);
  ASSERT_EQ(spawner.pids().size(), 2u);

  // Dies again at once: the delay doubles.
  spawner.exit(spawner.pids()[1], FakeSpawner::killed_by(SIGSEGV));
  supervisor.maintain(kStart + 2s);
  ASSERT_TRUE(supervisor.next_deadline());
  EXPECT_EQ(*supervisor.next_deadline(), kStart + 2s + 1s);
}

TEST(SupervisorTest, WorkerThatRanLongIsRestartedAtOnce) {
  FakeSpawner spawner;
  Supervisor supervisor(options(1), spawner);
  supervisor.maintain(kStart);
  spawner.exit(spawner.pids()[0], FakeSpawner::exited(0));
  supervisor.maintain(kStart + 1h);
  EXPECT_EQ(spawner.pids().size(), 2u);
  EXPECT_EQ(supervisor.alive(), 1);
}

TEST(SupervisorTest, StopSendsSigtermToEveryLiveWorker) {
  FakeSpawner spawner;
  Supervisor supervisor(options(2), spawner);
  supervisor.maintain(kStart);
  supervisor.stop(2s);

  EXPECT_EQ(supervisor.alive(), 0);
  std::vector<std::pair<pid_t, int>> expected = {{spawner.pids()[0], SIGTERM},
                                                 {spawner.pids()[1], SIGTERM}};
  EXPECT_EQ(spawner.signals(), expected);
  EXPECT_FALSE(spawner.alive(spawner.pids()[0]));
  // Stopped for good: nothing restarts.
  supervisor.maintain(kStart + 1h);
  EXPECT_EQ(spawner.pids().size(), 2u);
}

}  // namespace
}  // namespace farmhand::daemon
