// End-to-end: what a worker offers (cores, memory) and how it isolates its
// tasks, as `farmhand workers` shows them.
#include <chrono>
#include <cstdint>
#include <string>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

TEST(IsolationE2ETest, WorkersShowTheirCoresMemoryAndIsolation) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("sized", 1, {"--cores", "3", "--memory", "6G"}),
                     StandaloneWorker("plain", 1, {"--no-cgroups"})};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  auto workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(workers && workers->size() == 2u) << cluster.last_cli();
  for (const Json& worker : *workers) {
    if (worker["name"] == "sized") {
      EXPECT_EQ(worker["cores"], 3) << worker;
      EXPECT_EQ(worker["memory_bytes"], uint64_t{6} << 30) << worker;
      const std::string isolation = worker["isolation"];
      EXPECT_TRUE(isolation.starts_with("cgroup v2 (") || isolation.starts_with("process group ("))
          << isolation;
    } else {
      // Detected: at least a core and some memory.
      EXPECT_GE(worker["cores"], 1) << worker;
      EXPECT_GT(worker["memory_bytes"], 0) << worker;
      EXPECT_EQ(worker["isolation"], "process group (turned off by --no-cgroups)") << worker;
    }
  }

  CliResult table = cluster.run_cli({"workers"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("ISOLATION"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("0/6 GiB"), std::string::npos) << table.out;  // booked/total
  EXPECT_NE(table.out.find("process group (turned off by --no-cgroups)"), std::string::npos)
      << table.out;
}

TEST(IsolationE2ETest, BadMemoryFlagIsRefusedWithOneLine) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("bad", 1, {"--memory", "12X"}, false)};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(cluster.worker_log_path(0)).find("--memory: bad size '12X'") !=
               std::string::npos;
      },
      30s))
      << read_file(cluster.worker_log_path(0));
}

}  // namespace
}  // namespace farmhand::e2e
