// What attempts used, on the real binaries: the worker measures each command
// task (CPU of its whole process group, peak memory, how it ended), the broker
// stores it with the task's log and sums it per job, and `status --tasks`,
// `logs` and `status` show it, the sums also after a restart.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1 << 20;

// `burn` runs $0/burn.py as a child of the task's shell; `suicide` dies of SIGKILL.
const char* kCommands =
    "  burn:\n"
    "    argv: [/bin/sh, -c, '/usr/bin/python3 \"$0/burn.py\"; true', \"{dir}\"]\n"
    "    params:\n"
    "      dir: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    "  suicide:\n"
    "    argv: [/bin/sh, -c, 'echo about to die; kill -KILL $$']\n";

// Touches every page of 100 MiB, then burns 0.3 s of CPU time of its own
// (process time: the same on a loaded machine).
const char* kBurnScript =
    "import time\n"
    "n = 100 << 20\n"
    "x = bytearray(n)\n"
    "for i in range(0, n, 4096): x[i] = 1\n"
    "while time.process_time() < 0.3: pass\n"
    "print('burnt')\n";

ClusterOptions options() {
  ClusterOptions o;
  o.commands_yaml = kCommands;
  return o;
}

TEST(UsageE2ETest, StatusAndLogsShowWhatEachAttemptUsedAndJobTotalsSurviveARestart) {
  Cluster cluster(options());
  ASSERT_TRUE(cluster.start());
  {
    std::ofstream script(cluster.path("burn.py"));
    script << kBurnScript;
  }
  auto burn =
      cluster.submit({"command", "burn", "--frames", "1-2", "--param", "dir=" + cluster.dir()});
  ASSERT_TRUE(burn) << cluster.last_cli();
  auto burnt = cluster.wait_for_final_state(*burn, 120s);
  ASSERT_TRUE(burnt) << cluster.last_cli();
  ASSERT_EQ((*burnt)["job"]["state"], "succeeded") << *burnt;

  auto page = cluster.status_json(*burn, {"--tasks"});
  ASSERT_TRUE(page) << cluster.last_cli();
  ASSERT_EQ((*page)["tasks"].size(), 2u) << *page;
  for (const Json& task : (*page)["tasks"]) {
    const Json& last = task["last_attempt"];
    ASSERT_TRUE(last.is_object()) << task;
    EXPECT_GE(last["cpu_s"].get<double>(), 0.25) << task;
    EXPECT_GE(last["cpu_user_s"].get<double>(), 0.0) << task;
    EXPECT_GT(last["wall_s"].get<double>(), 0.0) << task;
    EXPECT_GE(last["peak_rss_bytes"].get<uint64_t>(), 100 * kMiB) << task;
    EXPECT_EQ(last["exit_code"], 0) << task;
    EXPECT_TRUE(last["exit_signal"].is_null()) << task;
  }
  const Json usage = (*page)["job"]["usage"];
  ASSERT_TRUE(usage.is_object()) << *page;
  EXPECT_EQ(usage["attempts"], 2) << usage;
  EXPECT_GE(usage["cpu_s"].get<double>(), 0.5) << usage;
  EXPECT_GE(usage["peak_rss_bytes"].get<uint64_t>(), 100 * kMiB) << usage;

  auto logs = cluster.cli_json({"logs", std::to_string(*burn)});
  ASSERT_TRUE(logs && logs->size() == 2u) << cluster.last_cli();
  for (const Json& log : *logs) {
    ASSERT_TRUE(log["stats"].is_object()) << log;
    EXPECT_GE(log["stats"]["cpu_s"].get<double>(), 0.25) << log;
    EXPECT_GE(log["stats"]["peak_rss_bytes"].get<uint64_t>(), 100 * kMiB) << log;
    EXPECT_EQ(log["stats"]["exit_code"], 0) << log;
  }

  // A task killed by a signal: its name, in JSON and in the text people read.
  auto killed = cluster.submit({"command", "suicide", "--frames", "1", "--max-attempts", "1"});
  ASSERT_TRUE(killed) << cluster.last_cli();
  auto dead = cluster.wait_for_final_state(*killed, 120s);
  ASSERT_TRUE(dead) << cluster.last_cli();
  ASSERT_EQ((*dead)["job"]["state"], "failed") << *dead;
  auto dead_page = cluster.status_json(*killed, {"--tasks"});
  ASSERT_TRUE(dead_page && (*dead_page)["tasks"].size() == 1u) << cluster.last_cli();
  const Json& dead_last = (*dead_page)["tasks"][0]["last_attempt"];
  EXPECT_EQ(dead_last["exit_signal"], "SIGKILL") << *dead_page;
  EXPECT_TRUE(dead_last["exit_code"].is_null()) << *dead_page;
  CliResult text = cluster.run_cli({"status", std::to_string(*killed), "--tasks"});
  ASSERT_EQ(text.exit_code, 0) << describe(text);
  EXPECT_NE(text.out.find("EXIT"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("SIGKILL"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("usage: cpu "), std::string::npos) << text.out;
  CliResult log_text = cluster.run_cli({"logs", std::to_string(*killed)});
  ASSERT_EQ(log_text.exit_code, 0) << describe(log_text);
  EXPECT_NE(log_text.out.find("killed by signal SIGKILL running /bin/sh ==\n-- used: wall "),
            std::string::npos)
      << log_text.out;
  EXPECT_NE(log_text.out.find(" exit SIGKILL --\n"), std::string::npos) << log_text.out;

  // The totals are rebuilt from the stored attempts.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  auto after = cluster.status_json(*burn);
  ASSERT_TRUE(after) << cluster.last_cli();
  const Json restored = (*after)["job"]["usage"];
  ASSERT_TRUE(restored.is_object()) << *after;
  EXPECT_EQ(restored["attempts"], usage["attempts"]) << restored;
  EXPECT_NEAR(restored["cpu_s"].get<double>(), usage["cpu_s"].get<double>(), 1e-6) << restored;
  EXPECT_EQ(restored["peak_rss_bytes"], usage["peak_rss_bytes"]) << restored;
}

}  // namespace
}  // namespace farmhand::e2e
