// End-to-end: what keeps workers attached to the broker — the local-worker
// supervisor, reconnection after a broker restart, and graceful shutdown.
#include <chrono>
#include <optional>
#include <string>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// The pid the broker lists for a live worker, if it is listed alive.
std::optional<pid_t> live_worker_pid(Cluster& cluster, const std::string& name) {
  auto workers = cluster.cli_json({"workers"});
  if (!workers) return std::nullopt;
  for (const auto& w : *workers) {
    if (w["name"] == name && w["alive"] == true) return w["pid"].get<pid_t>();
  }
  return std::nullopt;
}

TEST(SupervisionE2ETest, LocalWorkerThatDiesIsRestartedUnderItsName) {
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto first = live_worker_pid(cluster, "local-1");
  ASSERT_TRUE(first) << cluster.last_cli();
  ASSERT_EQ(kill(*first, SIGKILL), 0);

  std::optional<pid_t> second;
  ASSERT_TRUE(wait_until(
      [&] {
        second = live_worker_pid(cluster, "local-1");
        return second && *second != *first;
      },
      30s))
      << "local-1 was not restarted: " << cluster.last_cli();
  EXPECT_TRUE(process_alive(*second));
  EXPECT_FALSE(process_alive(*first));

  // The restarted worker takes work like any other.
  auto job = cluster.submit({"noop", "--tasks", "50"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
}

// A worker on another host outlives a broker crash: it reconnects, reports the
// task it still runs, and that task finishes once — it is neither lost nor rerun.
TEST(SupervisionE2ETest, StandaloneWorkerKeepsItsTaskAcrossABrokerRestart) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{"w1", 1}};
  options.commands_yaml =
      "  slow:\n"
      "    argv: [/bin/sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.05; done; echo ran >> \"$1\"', "
      "\"{release}\", \"{out}\"]\n"
      "    params:\n"
      "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
      "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string release = cluster.path("release");
  const std::string out = cluster.path("out.txt");
  auto job = cluster.submit({"command", "slow", "--frames", "1", "--param", "release=" + release,
                             "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = cluster.status_json(*job);
        return s && (*s)["job"]["counts"]["running"] == 1;
      },
      30s));

  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(process_alive(cluster.worker_pid(0)));
  ASSERT_TRUE(cluster.restart_broker());
  // Only now let the task finish: its result reaches the new broker.
  {
    std::FILE* f = std::fopen(release.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }

  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks);
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 1) << tasks->dump();
  EXPECT_EQ(read_file(out), "ran\n");
}

TEST(SupervisionE2ETest, SigtermStopsTheBrokerAndItsLocalWorkersCleanly) {
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto one = live_worker_pid(cluster, "local-1");
  auto two = live_worker_pid(cluster, "local-2");
  ASSERT_TRUE(one && two) << cluster.last_cli();
  pid_t broker = cluster.broker_pid();
  ASSERT_EQ(kill(broker, SIGTERM), 0);
  ASSERT_TRUE(wait_until([&] { return !cluster.broker_running(); }, 30s));
  EXPECT_TRUE(wait_until([&] { return !process_alive(*one) && !process_alive(*two); }, 10s));
  EXPECT_NE(read_file(cluster.broker_log_path()).find("broker stopped"), std::string::npos);
}

}  // namespace
}  // namespace farmhand::e2e
