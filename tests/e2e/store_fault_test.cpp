// The broker's state store on a small tmpfs that fills while tasks finish, on
// the real binaries: writes are refused with the store's error while reads are
// answered, the broker stays up and resumes by itself once space is freed, and
// nothing it reported succeeded is lost across a kill -9. As root the state dir
// is a small tmpfs that really fills (ENOSPC); elsewhere the same fault comes
// from the broker's file size limit (RLIMIT_FSIZE, lowered and raised again
// with prlimit: EFBIG), so the test runs everywhere.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// A tmpfs mounted at `dir`, lazily unmounted at the end (the broker may still
// hold files there while the cluster is torn down).
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& dir, const std::string& size) : dir_(dir) {
    ::mkdir(dir.c_str(), 0700);
    // FARMHAND_E2E_NO_MOUNT=1 takes the path of a machine that may not mount.
    if (std::getenv("FARMHAND_E2E_NO_MOUNT")) return;
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted_) why_ = std::strerror(errno);
  }

  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }

  bool mounted() const { return mounted_; }

  const std::string& why() const { return why_; }

  // Writes into `name` until the file system is full.
  bool fill(const std::string& name) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    const std::string block(64 * 1024, 'f');
    while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) out.flush();
    out.close();
    return true;
  }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string why_;
};

// Makes the broker's state writes fail, and succeed again: a tmpfs that fills
// when mounting is allowed, else the broker's file size limit held at the
// current size of its write-ahead log.
class StoreFault {
 public:
  explicit StoreFault(const std::string& state_dir)
      : state_dir_(state_dir), tmpfs_(state_dir, "6m") {}

  // The reason SQLite's failed write reports.
  std::string reason() const {
    return tmpfs_.mounted() ? "No space left on device" : "File too large";
  }

  // Fails every write that needs new space (and again after SQLite's rollback
  // gave some back).
  bool fail_writes(pid_t broker) {
    if (tmpfs_.mounted()) return tmpfs_.fill("filler" + std::to_string(++fills_));

    struct stat st {};

    const off_t size = ::stat((state_dir_ + "/farmhand.db-wal").c_str(), &st) == 0 ? st.st_size : 0;
    const rlimit limit{static_cast<rlim_t>(size), RLIM_INFINITY};
    return ::prlimit(broker, RLIMIT_FSIZE, &limit, nullptr) == 0;
  }

  bool heal(pid_t broker) {
    if (tmpfs_.mounted()) {
      for (; fills_ > 0; --fills_) {
        if (::unlink((state_dir_ + "/filler" + std::to_string(fills_)).c_str()) != 0) return false;
      }
      return true;
    }
    const rlimit limit{RLIM_INFINITY, RLIM_INFINITY};
    return ::prlimit(broker, RLIMIT_FSIZE, &limit, nullptr) == 0;
  }

 private:
  std::string state_dir_;
  SmallTmpfs tmpfs_;
  int fills_ = 0;
};

// Task index -> state, from `status --tasks`.
std::map<uint64_t, std::string> task_states(Cluster& cluster, uint64_t job) {
  std::map<uint64_t, std::string> states;
  auto status = cluster.status_json(job, {"--tasks", "--limit", "10000"});
  if (!status) return states;
  for (const auto& t : (*status)["tasks"]) {
    states[t["index"].get<uint64_t>()] = t["state"].get<std::string>();
  }
  return states;
}

std::set<uint64_t> succeeded(const std::map<uint64_t, std::string>& states) {
  std::set<uint64_t> out;
  for (const auto& [task, state] : states) {
    if (state == "succeeded") out.insert(task);
  }
  return out;
}

TEST(StoreFaultE2ETest, StateDirThatFillsAndFreesLosesNothingReportedSucceeded) {
  constexpr int kFrames = 300;
  ClusterOptions options;
  options.local_workers = 0;
  // Standalone workers keep their work dirs outside the full file system.
  options.workers = {StandaloneWorker("w1", 2), StandaloneWorker("w2", 2)};
  options.commands_yaml =
      "  append:\n"
      "    argv: [/bin/sh, -c, 'echo \"$1\" >> \"$2\"; sleep 0.02', sh, \"{frame}\", \"{out}\"]\n"
      "    params:\n"
      "      out: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  StoreFault fault(cluster.path("state"));
  ASSERT_TRUE(cluster.start());
  // The first failure names the OS error (fault.reason()); a disk that stays
  // full may next fail in SQLite without one ("disk I/O error"). Either way the
  // line says that the store write failed, and on which file.
  const std::string cause = "state store write failed: ";
  const std::string out = cluster.path("frames.txt");
  const std::string db = cluster.path("state/farmhand.db");

  auto job = cluster.submit({"command", "append", "--frames", "1-" + std::to_string(kFrames),
                             "--chunk", "1", "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(wait_until([&] { return succeeded(task_states(cluster, *job)).size() >= 20; }, 60s))
      << cluster.last_cli();

  // The disk fills while tasks finish.
  ASSERT_TRUE(fault.fail_writes(cluster.broker_pid()));
  ASSERT_TRUE(wait_until(
      [&] {
        return cluster.run_cli({"admin", "health"}).exit_code == 1;
      },
      60s))
      << "no commit failed: " << cluster.last_cli();
  // What SQLite gave back when it rolled the failed commit back is taken too.
  ASSERT_TRUE(fault.fail_writes(cluster.broker_pid()));

  // Writes are refused with the cause and the file; reads are answered.
  CliResult refused = cluster.run_cli({"submit", "noop", "--tasks", "1"});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_NE(refused.err.find(cause), std::string::npos) << describe(refused);
  EXPECT_NE(refused.err.find(" (" + db + ")"), std::string::npos) << describe(refused);
  // `farmhand admin health` says so, for a monitoring check: exit 1, the line on stderr.
  CliResult sick = cluster.run_cli({"admin", "health"});
  EXPECT_EQ(sick.exit_code, 1) << describe(sick);
  EXPECT_NE(sick.err.find(" (" + db +
                          "); writes are refused and dispatch is stopped, trying "
                          "again in "),
            std::string::npos)
      << describe(sick);
  const std::set<uint64_t> reported_while_full = succeeded(task_states(cluster, *job));
  EXPECT_FALSE(reported_while_full.empty()) << cluster.last_cli();
  EXPECT_TRUE(cluster.broker_running());

  // Space comes back: the broker resumes by itself and the job finishes.
  ASSERT_TRUE(fault.heal(cluster.broker_pid()));
  auto final_status = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded");
  EXPECT_TRUE(cluster.broker_running());
  auto accepted = cluster.submit({"noop", "--tasks", "1"});
  EXPECT_TRUE(accepted) << cluster.last_cli();
  CliResult healthy = cluster.run_cli({"admin", "health"});
  EXPECT_EQ(healthy.exit_code, 0) << describe(healthy);

  // kill -9 of the broker and of its workers, whose memory (unacknowledged
  // results) is lost with them: everything reported succeeded is still
  // succeeded, because the broker reported only what was on disk.
  const std::set<uint64_t> reported = succeeded(task_states(cluster, *job));
  for (size_t i = 0; i < cluster.worker_count(); ++i) cluster.kill_worker(i, SIGKILL);
  cluster.kill_broker(SIGKILL);
  for (size_t i = 0; i < cluster.worker_count(); ++i) {
    std::filesystem::remove_all(cluster.worker_work_dir(i));
    ASSERT_TRUE(cluster.restart_worker(i));
  }
  ASSERT_TRUE(cluster.restart_broker());
  const auto after = task_states(cluster, *job);
  for (uint64_t task : reported_while_full) {
    EXPECT_EQ(after.at(task), "succeeded") << "task " << task << " was reported succeeded";
  }
  for (uint64_t task : reported) EXPECT_EQ(after.at(task), "succeeded") << "task " << task;
  EXPECT_EQ(after.size(), static_cast<size_t>(kFrames));

  // No task ran twice at once because of the fault: every frame ran, and the
  // only reruns allowed are of tasks whose result was never acknowledged.
  std::map<std::string, int> runs;
  std::ifstream lines(out);
  for (std::string line; std::getline(lines, line);) ++runs[line];
  EXPECT_EQ(runs.size(), static_cast<size_t>(kFrames));
  int reruns = 0;
  for (const auto& [frame, n] : runs) reruns += n - 1;
  EXPECT_LE(reruns, 4) << "more reruns than the workers' slots can explain";
}

}  // namespace
}  // namespace farmhand::e2e
