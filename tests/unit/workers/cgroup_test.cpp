// Task cgroups and host resources: the probe's verdicts on made-up hosts (files
// in a temp dir standing in for /proc and /sys), and on this host's real cgroup
// v2 a run whose grandchild calls setsid, runs past its memory and is killed.
#include "workers/cgroup.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "workers/host_resources.h"
#include "workers/process_runner.h"

namespace farmhand::worker {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kWaitLimit = 30s;  // a limit on a hung test, not a timing expectation
constexpr uint64_t kMiB = 1024 * 1024;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// A made-up host: its /proc/self files and cgroup directories in `tmp`.
struct FakeHost {
  testing_support::TempDir tmp;
  TaskCgroups::Sources sources{tmp.file("self_cgroup"), tmp.file("mounts")};

  // A cgroup directory of the fake v2 mount (has cgroup.procs).
  std::string cgroup2(const std::string& path) {
    const std::string dir = tmp.file("cg2") + path;
    write_file(dir + "/cgroup.procs", "");
    return dir;
  }
};

TEST(TaskCgroupsTest, HostWithoutACgroupV2LineRunsProcessGroupsAndSaysWhy) {
  FakeHost host;
  write_file(host.sources.self_cgroup, "4:memory:/x\n1:cpu:/\n");
  write_file(host.sources.mounts, "cgroup2 " + host.tmp.file("cg2") + " cgroup2 rw 0 0\n");
  auto cgroups = TaskCgroups::probe(host.sources);
  EXPECT_FALSE(cgroups->enabled());
  EXPECT_EQ(cgroups->isolation(true),
            "process group (no cgroup v2 line in " + host.sources.self_cgroup + ")");
  EXPECT_FALSE(cgroups->create(0));
}

TEST(TaskCgroupsTest, HostWithoutACgroup2MountRunsProcessGroupsAndSaysWhy) {
  FakeHost host;
  write_file(host.sources.self_cgroup, "0::/\n");
  write_file(host.sources.mounts, "proc /proc proc rw 0 0\n");
  auto cgroups = TaskCgroups::probe(host.sources);
  EXPECT_FALSE(cgroups->enabled());
  EXPECT_EQ(cgroups->isolation(true), "process group (no cgroup2 file system mounted)");
  EXPECT_EQ(cgroups->isolation(false),
            "process group (no cgroup2 file system mounted); memory requests not enforced");
}

TEST(TaskCgroupsTest, OwnCgroupIsFoundUnderAMountWithEscapedBlanks) {
  FakeHost host;
  const std::string mount = host.tmp.file("cg 2");
  write_file(mount + "/a/b/cgroup.procs", "");
  write_file(host.sources.self_cgroup, "0::/a/b\n");
  write_file(host.sources.mounts, "cgroup2 " + host.tmp.file("cg\\0402") + " cgroup2 rw 0 0\n");
  Result<std::string> own = own_cgroup2_dir(host.sources);
  ASSERT_TRUE(own) << own.error().reason;
  EXPECT_EQ(*own, mount + "/a/b");
}

TEST(TaskCgroupsTest, DisabledOnRequestSaysSo) {
  auto cgroups = TaskCgroups::disabled("turned off by --no-cgroups");
  EXPECT_EQ(cgroups->isolation(true), "process group (turned off by --no-cgroups)");
}

TEST(HostResourcesTest, QuotaRoundsUpToWholeCores) {
  EXPECT_EQ(cores_of_quota(50'000, 100'000), 1u);
  EXPECT_EQ(cores_of_quota(150'000, 100'000), 2u);
  EXPECT_EQ(cores_of_quota(400'000, 100'000), 4u);
  EXPECT_EQ(cores_of_quota(-1, 100'000), 0u);  // v1's "no quota"
  EXPECT_EQ(cores_of_quota(0, 0), 0u);
}

TEST(HostResourcesTest, TheSmallestLimitOfTheCgroupAndItsAncestorsWins) {
  FakeHost host;
  write_file(host.sources.self_cgroup, "0::/a/b\n");
  write_file(host.sources.mounts, "cgroup2 " + host.tmp.file("cg2") + " cgroup2 rw 0 0\n");
  host.cgroup2("");
  const std::string a = host.cgroup2("/a");
  const std::string b = host.cgroup2("/a/b");
  write_file(a + "/memory.max", "1073741824\n");
  write_file(b + "/memory.max", "max\n");
  write_file(b + "/cpu.max", "50000 100000\n");
  write_file(a + "/cpu.max", "max 100000\n");
  const HostResources found = detect_host_resources(host.sources);
  EXPECT_EQ(found.cores, 1u);
  EXPECT_EQ(found.cores_from, "cpu.max of " + b);
  EXPECT_EQ(found.memory_bytes, 1024 * kMiB);
  EXPECT_EQ(found.memory_from, "memory.max of " + a);
}

TEST(HostResourcesTest, CgroupV1LimitsCountOnAHybridHost) {
  FakeHost host;
  const std::string memory = host.tmp.file("v1mem");
  const std::string cpu = host.tmp.file("v1cpu");
  write_file(host.sources.self_cgroup, "4:memory:/job\n2:cpu,cpuacct:/job\n0::/\n");
  write_file(host.sources.mounts, "cgroup " + memory + " cgroup rw,memory 0 0\ncgroup " + cpu +
                                      " cgroup rw,cpu,cpuacct 0 0\n");
  write_file(memory + "/cgroup.procs", "");
  write_file(memory + "/job/cgroup.procs", "");
  write_file(memory + "/job/memory.limit_in_bytes", "536870912\n");
  write_file(cpu + "/cgroup.procs", "");
  write_file(cpu + "/job/cgroup.procs", "");
  write_file(cpu + "/job/cpu.cfs_quota_us", "100000\n");
  write_file(cpu + "/job/cpu.cfs_period_us", "100000\n");
  const HostResources found = detect_host_resources(host.sources);
  EXPECT_EQ(found.cores, 1u);
  EXPECT_EQ(found.memory_bytes, 512 * kMiB);
  EXPECT_EQ(found.memory_from, "memory.limit_in_bytes of " + memory + "/job");
}

TEST(HostResourcesTest, WithoutLimitsItIsTheMachine) {
  FakeHost host;
  write_file(host.sources.self_cgroup, "");
  write_file(host.sources.mounts, "");
  const HostResources found = detect_host_resources(host.sources);
  EXPECT_GE(found.cores, 1u);
  EXPECT_EQ(found.cores_from, "affinity");
  EXPECT_EQ(found.memory_bytes, static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                    static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(found.memory_from, "physical");
}

// ---------------------------------------------------------- on this host's cgroup v2

bool process_dead(pid_t pid) {
  if (kill(pid, 0) == -1 && errno == ESRCH) return true;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// The pid a task wrote to `path`, once it has.
std::optional<pid_t> wait_for_pid_file(const std::string& path) {
  const auto limit = steady_clock::now() + kWaitLimit;
  while (steady_clock::now() < limit) {
    const std::string text = read_file(path);
    if (!text.empty() && text.back() == '\n') return static_cast<pid_t>(std::stol(text));
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

// The outcome of run `id`, once the runner reports it.
std::optional<RunOutcome> wait_for_outcome(ProcessRunner& runner, uint64_t id) {
  const auto limit = steady_clock::now() + kWaitLimit;
  while (steady_clock::now() < limit) {
    for (RunOutcome& outcome : runner.poll(steady_clock::now())) {
      if (outcome.id == id) return outcome;
    }
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

class RealCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cgroups_ = TaskCgroups::probe();
    if (!cgroups_->enabled()) {
      // The fallback must say so, with its reason, for `farmhand workers`.
      const std::string isolation = cgroups_->isolation(true);
      ASSERT_TRUE(isolation.starts_with("process group (") && isolation.size() > 16) << isolation;
      // Where the host must give cgroups (this project's dev VM does), no skip.
      if (std::getenv("FARMHAND_REQUIRE_CGROUPS") != nullptr) {
        FAIL() << "FARMHAND_REQUIRE_CGROUPS is set but " << isolation;
      }
      GTEST_SKIP() << "this host gives no writable cgroup v2: " << isolation;
    }
  }

  RunSpec spec(uint64_t id, std::vector<std::string> command) const {
    RunSpec s;
    s.id = id;
    s.commands = {std::move(command)};
    s.log_path = tmp_.file("task.log");
    return s;
  }

  // Starts a run whose grandchild leaves the group with setsid and writes its
  // pid to a file: the pid, once written.
  std::optional<pid_t> start_with_setsid_grandchild(ProcessRunner& runner, RunSpec run) {
    EXPECT_TRUE(runner.start(std::move(run), steady_clock::now()));
    return wait_for_pid_file(pid_file());
  }

  std::vector<std::string> setsid_script() const {
    // The grandchild writes its pid itself, after setsid, so the test never
    // looks at it before it has left.
    return {"/bin/sh", "-c",
            "setsid sh -c 'echo $$ > " + pid_file() + ".tmp && mv " + pid_file() + ".tmp " +
                pid_file() + " && exec sleep 1000' </dev/null >/dev/null 2>&1 & exec sleep 1000"};
  }

  std::string pid_file() const { return tmp_.file("grandchild.pid"); }

  testing_support::TempDir tmp_;
  std::unique_ptr<TaskCgroups> cgroups_;
};

TEST_F(RealCgroupTest, CancelKillsAGrandchildThatCalledSetsid) {
  ProcessRunner runner(100ms, common::real_spawner(), 1s, cgroups_.get());
  auto grandchild = start_with_setsid_grandchild(runner, spec(1, setsid_script()));
  ASSERT_TRUE(grandchild);
  // It did leave the task's session and group: a group kill would miss it.
  EXPECT_EQ(getsid(*grandchild), *grandchild);
  const std::optional<std::string> cgroup = runner.cgroup_path(1);
  ASSERT_TRUE(cgroup);
  EXPECT_NE(read_file(*cgroup + "/cgroup.procs").find(std::to_string(*grandchild)),
            std::string::npos);

  runner.cancel(1, steady_clock::now());
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "cancelled");
  // The run reports only once its cgroup is empty: the grandchild is dead now.
  EXPECT_TRUE(process_dead(*grandchild)) << "setsid grandchild " << *grandchild << " escaped";
  // And its cgroup is gone.
  EXPECT_FALSE(std::filesystem::exists(*cgroup));
}

TEST_F(RealCgroupTest, TimeoutKillsAGrandchildThatCalledSetsid) {
  ProcessRunner runner(100ms, common::real_spawner(), 1s, cgroups_.get());
  RunSpec run = spec(1, setsid_script());
  run.timeout = 1s;
  auto grandchild = start_with_setsid_grandchild(runner, std::move(run));
  ASSERT_TRUE(grandchild);
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kTimeout);
  EXPECT_TRUE(process_dead(*grandchild)) << "setsid grandchild " << *grandchild << " escaped";
}

TEST_F(RealCgroupTest, WithoutCgroupsASetsidGrandchildEscapesTheGroupKill) {
  // Why the cgroup is needed: the same run as a process group only.
  ProcessRunner runner(100ms, common::real_spawner(), 1s, nullptr);
  auto grandchild = start_with_setsid_grandchild(runner, spec(1, setsid_script()));
  ASSERT_TRUE(grandchild);
  runner.cancel(1, steady_clock::now());
  ASSERT_TRUE(wait_for_outcome(runner, 1));
  EXPECT_FALSE(process_dead(*grandchild));
  kill(*grandchild, SIGKILL);
}

TEST_F(RealCgroupTest, CpuTimeCountsASetsidGrandchildNobodyWaitedFor) {
  ProcessRunner runner(100ms, common::real_spawner(), 1s, cgroups_.get());
  // The work is done by a grandchild in its own session that nobody reaps in
  // the task (so wait4 never reports its CPU); it writes down its own CPU time.
  const std::string cpu_file = tmp_.file("grandchild.cpu");
  const std::string python =
      "import os, time\n"
      "x = 0\n"
      "for i in range(3000000): x += i\n"
      "open('" +
      cpu_file +
      ".tmp', 'w').write(str(time.process_time()))\n"
      "os.rename('" +
      cpu_file + ".tmp', '" + cpu_file + "')\n";
  const std::string script =
      "setsid /usr/bin/python3 -c \"$0\" </dev/null & "
      "while [ ! -s " +
      cpu_file + " ]; do sleep 0.05; done";
  ASSERT_TRUE(runner.start(spec(1, {"/bin/sh", "-c", script, python}), steady_clock::now()));
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded) << (outcome->error ? outcome->error->reason : "");
  const double grandchild_s = std::stod(read_file(cpu_file));
  const double counted_s =
      static_cast<double>((outcome->usage.cpu_user + outcome->usage.cpu_system).count()) / 1e6;
  EXPECT_GE(counted_s, grandchild_s);
}

TEST_F(RealCgroupTest, EachRunGetsItsOwnCgroupWhichItsProcessIsIn) {
  ProcessRunner runner(100ms, common::real_spawner(), 1s, cgroups_.get());
  ASSERT_TRUE(runner.start(spec(1, {"/bin/sleep", "1000"}), steady_clock::now()));
  ASSERT_TRUE(runner.start(spec(2, {"/bin/sleep", "1000"}), steady_clock::now()));
  const auto one = runner.cgroup_path(1);
  const auto two = runner.cgroup_path(2);
  ASSERT_TRUE(one && two);
  EXPECT_NE(*one, *two);
  EXPECT_EQ(std::filesystem::path(*one).parent_path().string(), cgroups_->subtree());
  const std::string procs = read_file(*one + "/cgroup.procs");
  EXPECT_EQ(procs, std::to_string(*runner.leader_pid(1)) + "\n");
  runner.cancel(1, steady_clock::now());
  runner.cancel(2, steady_clock::now());
  const auto limit = steady_clock::now() + kWaitLimit;
  while (runner.running() > 0 && steady_clock::now() < limit) {
    (void)runner.poll(steady_clock::now());
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(runner.running(), 0u);
  EXPECT_FALSE(std::filesystem::exists(*one));
  EXPECT_FALSE(std::filesystem::exists(*two));
}

// A task that allocates 400 MiB against a 128 MiB limit: killed by memory.max
// where the memory controller is, by the runner's sampling elsewhere; the same
// reason either way.
void expect_killed_for_memory(const RunOutcome& outcome) {
  ASSERT_TRUE(outcome.error);
  EXPECT_TRUE(outcome.out_of_memory);
  EXPECT_EQ(outcome.error->code, ErrorCode::kCrashed);
  EXPECT_EQ(outcome.error->reason.rfind("killed: out of memory at ", 0), 0u)
      << outcome.error->reason;
  EXPECT_NE(outcome.error->reason.find(" peak (past its 128 MiB request)"), std::string::npos)
      << outcome.error->reason;
  EXPECT_GE(outcome.usage.peak_rss_bytes, 128 * kMiB);
}

std::vector<std::string> allocate_400_mib() {
  return {"/usr/bin/python3", "-c", "import time; b = bytearray(400 << 20); time.sleep(1000)"};
}

TEST_F(RealCgroupTest, RunPastItsMemoryLimitIsKilledAndSaysOutOfMemory) {
  ProcessRunner runner(100ms, common::real_spawner(), 50ms, cgroups_.get());
  RunSpec run = spec(1, allocate_400_mib());
  run.memory_limit = 128 * kMiB;
  ASSERT_TRUE(runner.start(std::move(run), steady_clock::now()));
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  expect_killed_for_memory(*outcome);
  EXPECT_NE(read_file(tmp_.file("task.log")).find("farmhand: killed: out of memory at "),
            std::string::npos);
}

TEST(ProcessRunnerMemoryTest, ProcessGroupPastItsMemoryLimitIsKilledBySampling) {
  testing_support::TempDir tmp;
  ProcessRunner runner(100ms, common::real_spawner(), 50ms, nullptr);
  RunSpec run;
  run.id = 1;
  run.commands = {allocate_400_mib()};
  run.log_path = tmp.file("task.log");
  run.memory_limit = 128 * kMiB;
  ASSERT_TRUE(runner.start(std::move(run), steady_clock::now()));
  std::optional<RunOutcome> outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  expect_killed_for_memory(*outcome);
}

TEST(ProcessRunnerMemoryTest, RunWithinItsLimitSucceeds) {
  testing_support::TempDir tmp;
  auto cgroups = TaskCgroups::probe();
  ProcessRunner runner(100ms, common::real_spawner(), 50ms, cgroups.get());
  RunSpec run;
  run.id = 1;
  run.commands = {{"/usr/bin/python3", "-c", "b = bytearray(16 << 20)"}};
  run.log_path = tmp.file("task.log");
  run.memory_limit = 256 * kMiB;
  ASSERT_TRUE(runner.start(std::move(run), steady_clock::now()));
  std::optional<RunOutcome> outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded) << (outcome->error ? outcome->error->reason : "");
  EXPECT_FALSE(outcome->out_of_memory);
}

}  // namespace
}  // namespace farmhand::worker
