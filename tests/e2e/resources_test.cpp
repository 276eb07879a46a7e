// End-to-end on the real binaries: tasks packed by the cores they ask for, a
// request no worker can meet, and a task that allocates past its memory (its
// peak and the out-of-memory reason, and --memory-retry-factor).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/shared_commands.h"
#include "tests/support/cluster.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// Touches MB mebibytes and holds them for a second, as a render that needs them.
const char* kHogCommand =
    "  hog:\n"
    "    argv: [/usr/bin/python3, -c, 'import sys, time; b = bytearray(int(sys.argv[1]) << 20); "
    "time.sleep(1)', \"{mb}\"]\n"
    "    params:\n"
    "      mb: {pattern: '^[0-9]{1,5}$'}\n";

// Writes the cores the task booked to $0.
const char* kCoresCommand =
    "  cores:\n"
    "    argv: [/bin/sh, -c, 'echo \"$FARMHAND_CORES\" > \"$0\"', \"{out}\"]\n"
    "    params:\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

TEST(ResourcesE2ETest, TasksArePackedByTheirCoresAndARequestNoWorkerMeetsSaysSo) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("big", 4, {"--cores", "4", "--memory", "8G"})};
  options.commands_yaml = std::string(kCountingCommand) + kCoresCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  // Four slots, four cores, two cores a task: never more than two at once.
  auto job = cluster.submit({"command", "counted", "--frames", "1-6", "--param",
                             "dir=" + cluster.dir(), "--cores", "2", "--memory", "1G"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
  const std::vector<int> seen = seen_counts(cluster.path("seen"));
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(*std::max_element(seen.begin(), seen.end()), 2)
      << "more tasks ran at once than the worker's cores hold (or never two)";
  // The task is told how many cores it booked (a renderer's thread count).
  auto told = cluster.submit({"command", "cores", "--frames", "1", "--param",
                              "out=" + cluster.path("cores"), "--cores", "3"});
  ASSERT_TRUE(told) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_final_state(*told, 60s)) << cluster.last_cli();
  EXPECT_EQ(lines_of(cluster.path("cores")), std::vector<std::string>{"3"});

  auto workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(workers && workers->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*workers)[0]["cores_used"], 0) << "a finished task kept its cores booked";

  // Sixteen cores: no worker has them. The job says so and waits; asking for
  // less lets it run.
  auto big = cluster.submit({"noop", "--tasks", "1", "--cores", "16"});
  ASSERT_TRUE(big) << cluster.last_cli();
  CliResult submitted = cluster.run_cli({"status", std::to_string(*big)});
  EXPECT_NE(submitted.out.find("no worker can ever run a task of this job: each asks for 16 "
                               "cores, and the largest worker that serves any pool has 4 cores"),
            std::string::npos)
      << submitted.out;
  CliResult set = cluster.run_cli({"job", "set", std::to_string(*big), "--cores", "4"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto ran = cluster.wait_for_final_state(*big, 60s);
  ASSERT_TRUE(ran) << cluster.last_cli();
  EXPECT_EQ((*ran)["job"]["state"], "succeeded") << *ran;
  CliResult bad = cluster.run_cli({"submit", "noop", "--tasks", "1", "--memory", "lots"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("lots"), std::string::npos) << bad.err;
}

// Each task, under a lock: counts itself in ($0/seen, as kCountingCommand),
// notes its CUDA_VISIBLE_DEVICES ($0/gpus) and a clash if a running task holds
// the same GPU; holds a moment; lets go.
const char* kGpuCommand =
    "  gpu:\n"
    "    argv: [/bin/sh, -c, '( flock 9; g=\"$CUDA_VISIBLE_DEVICES\"; "
    "n=$(cat \"$0/now\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$0/now\"; "
    "echo $n >> \"$0/seen\"; [ -e \"$0/held$g\" ] && echo \"$g\" >> \"$0/clash\"; "
    "touch \"$0/held$g\"; echo \"$g $FARMHAND_GPUS\" >> \"$0/gpus\" ) 9>\"$0/lock\"; sleep 0.3; "
    "( flock 9; rm -f \"$0/held$CUDA_VISIBLE_DEVICES\"; n=$(cat \"$0/now\"); "
    "echo $((n-1)) > \"$0/now\" ) 9>\"$0/lock\"', \"{dir}\"]\n"
    "    params:\n"
    "      dir: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

TEST(ResourcesE2ETest, GpuTasksGetGpusOfTheirOwnAndAWorkerWithoutNoneOfThem) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("gpu", 4, {"--gpus", "2"}),
                     StandaloneWorker("cpu", 4, {"--gpus", "0"})};
  options.commands_yaml = kGpuCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  // Eight slots on two workers, two GPUs on one: never more than two at once,
  // each on a GPU no other running task has.
  auto job = cluster.submit(
      {"command", "gpu", "--frames", "1-6", "--param", "dir=" + cluster.dir(), "--gpus", "1"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
  const std::vector<int> seen = seen_counts(cluster.path("seen"));
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_LE(*std::max_element(seen.begin(), seen.end()), 2);
  for (const std::string& line : lines_of(cluster.path("gpus"))) {
    EXPECT_TRUE(line == "0 1" || line == "1 1") << line;
  }
  EXPECT_TRUE(lines_of(cluster.path("clash")).empty()) << "two running tasks shared a GPU";
  auto status = cluster.cli_json({"status", std::to_string(*job), "--tasks"});
  ASSERT_TRUE(status) << cluster.last_cli();
  for (const auto& task : (*status)["tasks"]) EXPECT_EQ(task["worker"], "gpu") << task;

  auto workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(workers) << cluster.last_cli();
  for (const auto& worker : *workers) {
    EXPECT_EQ(worker["gpus"], worker["name"] == "gpu" ? 2 : 0) << worker;
    EXPECT_EQ(worker["gpus_used"], 0) << worker;
  }
  // Three GPUs a task: no worker has them, and the job says so.
  auto big = cluster.submit({"noop", "--tasks", "1", "--gpus", "3"});
  ASSERT_TRUE(big) << cluster.last_cli();
  CliResult waiting = cluster.run_cli({"status", std::to_string(*big)});
  EXPECT_NE(waiting.out.find("each asks for 3 GPUs, and the largest worker that serves any "
                             "pool has 2 GPUs"),
            std::string::npos)
      << waiting.out;
}

TEST(ResourcesE2ETest, ATaskPastItsMemoryFailsOutOfMemoryAndRunsAgainWithTheGrownRequest) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("w", 1, {"--memory", "4G"})};
  options.commands_yaml = kHogCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  // 200 MiB against a 64 MiB request: the first attempt is killed; the factor
  // of 4 takes the request past what it needs, and the second attempt succeeds.
  auto job = cluster.submit({"command", "hog", "--frames", "1", "--param", "mb=200", "--memory",
                             "64M", "--memory-retry-factor", "4", "--max-attempts", "2"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
  EXPECT_GE((*done)["job"]["memory_bytes"].get<uint64_t>(), uint64_t{256} << 20)
      << "the request did not grow: " << *done;

  auto logs = cluster.cli_json({"logs", std::to_string(*job)});
  ASSERT_TRUE(logs) << cluster.last_cli();
  bool killed = false;
  for (const Json& log : *logs) {
    if (log["attempt"] != 1) continue;
    const std::string error = log["error"];
    EXPECT_NE(error.find("killed: out of memory at "), std::string::npos) << error;
    ASSERT_TRUE(log.contains("stats")) << log;
    EXPECT_GE(log["stats"]["peak_rss_bytes"].get<uint64_t>(), uint64_t{64} << 20)
        << "the peak shown is under the limit it broke: " << log;
    killed = true;
  }
  EXPECT_TRUE(killed) << "no first attempt in the logs: " << *logs;
  CliResult text = cluster.run_cli({"logs", std::to_string(*job)});
  EXPECT_NE(text.out.find("out of memory"), std::string::npos) << text.out;
}

}  // namespace
}  // namespace farmhand::e2e
