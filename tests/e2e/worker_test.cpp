// End-to-end: farmhand-worker on its own — what it costs while its broker is
// away, the work dir it owns, and results that outlive a worker restart.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// User plus system CPU time a process has used, in seconds (fields 14 and 15
// of /proc/PID/stat; the fields after the command name start at field 3).
std::optional<double> cpu_seconds(pid_t pid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  for (int n = 3; n <= 15 && fields >> field; ++n) {
    if (n == 14) utime = std::stoull(field);
    if (n == 15) stime = std::stoull(field);
  }
  if (!fields) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Saved results (complete *.result files) in a worker's results folder.
size_t count_results(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    n += it->path().extension() == ".result";
  }
  return n;
}

bool touch(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

// A command that runs until its release file exists, then appends "ran" to out.
const char* kSlowCommand =
    "  slow:\n"
    "    argv: [/bin/sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.05; done; echo ran >> \"$1\"', "
    "\"{release}\", \"{out}\"]\n"
    "    params:\n"
    "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

// Issue 10: a worker whose broker went away polled with a zero timeout for the
// whole reconnect backoff (98% of a core at the 30 s cap). It must sleep, and
// still rejoin when the broker returns.
TEST(WorkerE2ETest, WorkerWithoutItsBrokerSleepsAndRejoinsWhenTheBrokerReturns) {
  ClusterOptions options;
  options.local_workers = 0;
  // A low backoff cap, so that the test reaches it within seconds.
  options.workers = {{"w1", 1, {"--max-reconnect-delay-ms", "2000"}}};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  cluster.kill_broker(SIGKILL);

  // The worker logs each attempt with its delay; at the cap it stays there.
  const std::string log = cluster.worker_log_path(0);
  ASSERT_TRUE(wait_until([&] { return count(read_file(log), "reconnect_in_ms=2000") >= 2; }, 60s))
      << read_file(log);
  pid_t worker = cluster.worker_pid(0);
  auto cpu_before = cpu_seconds(worker);
  auto wall_before = std::chrono::steady_clock::now();
  ASSERT_TRUE(cpu_before);
  // The measurement window itself (several backoff periods), not a wait for a condition.
  std::this_thread::sleep_for(6s);
  auto cpu_after = cpu_seconds(worker);
  double window_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_before).count();
  ASSERT_TRUE(cpu_after);
  EXPECT_LT(*cpu_after - *cpu_before, 0.01 * window_s)
      << "the worker used " << (*cpu_after - *cpu_before) << " s of CPU in " << window_s
      << " s without its broker";

  // The broker returns on the same state dir and endpoints: the worker rejoins
  // (restart_broker waits until `farmhand workers` lists it alive) and works.
  ASSERT_TRUE(cluster.restart_broker());
  auto job = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
}

// Issue 10: local workers of two brokers on one host had the same default work
// dir ($TMPDIR/farmhand-worker-UID/local-1) and mixed each other's task logs.
TEST(WorkerE2ETest, LocalWorkersOfTwoBrokersOnOneHostKeepTheirTaskLogsApart) {
  testing_support::TempDir host_tmp("fh-host");
  ASSERT_FALSE(host_tmp.path().empty());
  ClusterOptions options;
  options.local_workers = 1;
  options.env = {"TMPDIR=" + host_tmp.path()};
  options.commands_yaml =
      "  say:\n"
      "    argv: [/bin/sh, -c, 'echo \"$0\"; : > \"$1\"; while [ ! -e \"$2\" ]; do sleep 0.05; "
      "done', \"{text}\", \"{started}\", \"{release}\"]\n"
      "    params:\n"
      "      text: {pattern: '^[a-z-]+$'}\n"
      "      started: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
      "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";
  Cluster a(options);
  Cluster b(options);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());

  struct Run {
    Cluster& cluster;
    std::string text;
    std::optional<uint64_t> job;
  };

  std::vector<Run> runs = {{a, "from-broker-a", {}}, {b, "from-broker-b", {}}};
  for (Run& run : runs) {
    run.job = run.cluster.submit({"command", "say", "--frames", "1", "--param", "text=" + run.text,
                                  "--param", "started=" + run.cluster.path("started"), "--param",
                                  "release=" + run.cluster.path("release")});
    ASSERT_TRUE(run.job) << run.cluster.last_cli();
  }
  // Both tasks run at once, each having written its line, before either ends.
  ASSERT_TRUE(wait_until(
      [&] {
        return std::filesystem::exists(a.path("started")) &&
               std::filesystem::exists(b.path("started"));
      },
      60s));
  for (Run& run : runs) ASSERT_TRUE(touch(run.cluster.path("release")));
  for (Run& run : runs) {
    auto done = run.cluster.wait_for_final_state(*run.job, 60s);
    ASSERT_TRUE(done);
    EXPECT_EQ((*done)["job"]["state"], "succeeded");
  }
  for (Run& run : runs) {
    auto logs = run.cluster.cli_json({"logs", std::to_string(*run.job)});
    ASSERT_TRUE(logs) << run.cluster.last_cli();
    ASSERT_EQ(logs->size(), 1u) << logs->dump();
    const std::string text = (*logs)[0]["text"];
    EXPECT_NE(text.find(run.text + "\n"), std::string::npos) << text;
    const std::string& other = (&run == &runs[0] ? runs[1] : runs[0]).text;
    EXPECT_EQ(text.find(other), std::string::npos) << text;
  }
}

TEST(WorkerE2ETest, SecondWorkerOnTheSameWorkDirRefusesNamingTheFirst) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{"w1", 1}};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  CliResult second =
      cluster.run_binary("farmhand-worker", {"--broker", cluster.worker_endpoint(), "--name", "w2",
                                             "--work-dir", cluster.worker_work_dir(0)});
  EXPECT_EQ(second.exit_code, 1) << describe(second);
  EXPECT_NE(second.err.find("in use by another worker (pid " +
                            std::to_string(cluster.worker_pid(0)) + ")"),
            std::string::npos)
      << describe(second);
  EXPECT_EQ(count(second.err, "\n"), 1u) << describe(second);
  // The first one is untouched.
  auto alive = cluster.alive_workers();
  ASSERT_TRUE(alive) << cluster.last_cli();
  EXPECT_EQ(*alive, std::vector<std::string>{"w1"});
}

// Issue 10: a result the broker never acknowledged was lost with the worker
// process, and the task ran again.
TEST(WorkerE2ETest, ResultOfATaskThatEndedWhileTheBrokerWasDownSurvivesAWorkerRestart) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{"w1", 1}};
  options.commands_yaml = kSlowCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string release = cluster.path("release");
  const std::string out = cluster.path("out.txt");
  auto job = cluster.submit({"command", "slow", "--frames", "1", "--param", "release=" + release,
                             "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_running(*job, 1, 30s)) << cluster.last_cli();

  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(touch(release));
  // The task ends with nobody to take its result; the worker keeps it on disk
  // (a *.result file is complete: it is renamed into place once written).
  const std::string results = cluster.worker_work_dir(0) + "/results";
  ASSERT_TRUE(
      wait_until([&] { return read_file(out) == "ran\n" && count_results(results) == 1; }, 60s))
      << read_file(cluster.worker_log_path(0));
  cluster.kill_worker(0, SIGKILL);

  ASSERT_TRUE(cluster.restart_worker(0));
  ASSERT_TRUE(cluster.restart_broker());
  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks);
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 1) << tasks->dump();
  EXPECT_EQ(read_file(out), "ran\n");
  // Acknowledged: nothing is left to resend.
  EXPECT_TRUE(wait_until([&] { return count_results(results) == 0; }, 30s));
}

// The standalone workers named `name` that `farmhand workers` lists.
std::vector<Json> workers_named(Cluster& cluster, const std::string& name) {
  std::vector<Json> found;
  auto workers = cluster.cli_json({"workers"});
  if (!workers) return found;
  for (const auto& w : *workers) {
    if (w.value("name", "") == name) found.push_back(w);
  }
  return found;
}

// Issue 10: two live workers with one name (a cloned render node, a copied
// --name). The second is refused and never evicts the first, whose task runs
// on and succeeds once; when the first leaves, the second joins within its
// backoff and takes work.
TEST(WorkerE2ETest, SecondLiveWorkerUnderATakenNameIsRefusedAndJoinsOnceTheFirstLeaves) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{"render01", 1}};
  options.commands_yaml = kSlowCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string release = cluster.path("release");
  const std::string out = cluster.path("out.txt");
  auto job = cluster.submit({"command", "slow", "--frames", "1", "--param", "release=" + release,
                             "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_running(*job, 1, 30s)) << cluster.last_cli();

  StandaloneWorker clone("clone", 1, {}, /*alive=*/false);
  clone.claims_name = "render01";
  ASSERT_TRUE(cluster.add_worker(clone));
  // A cloned host has a key the broker admits: the name, not the key, is the conflict.
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  const pid_t first = cluster.worker_pid(0);
  const pid_t second = cluster.worker_pid(1);
  const std::string clone_log = cluster.worker_log_path(1);
  // Refused, and refused again at its next tries: the broker logs each one.
  ASSERT_TRUE(wait_until(
      [&] { return count(read_file(cluster.broker_log_path()), "worker refused") >= 2; }, 60s))
      << read_file(clone_log);
  const std::string refusal =
      "refused by broker: worker name \"render01\" is in use by a live worker";
  EXPECT_NE(read_file(clone_log).find(refusal), std::string::npos) << read_file(clone_log);
  EXPECT_EQ(count(read_file(clone_log), "refused by broker"), 1u)
      << "the refusal is logged once, not at every retry\n"
      << read_file(clone_log);
  EXPECT_TRUE(process_alive(second)) << "a refused worker keeps trying";

  // One render01, the first process, still running the task.
  auto listed = workers_named(cluster, "render01");
  ASSERT_EQ(listed.size(), 1u) << cluster.last_cli();
  EXPECT_EQ(listed[0]["pid"], first);
  EXPECT_TRUE(listed[0]["alive"].get<bool>());
  EXPECT_EQ(listed[0]["running"].size(), 1u) << listed[0].dump();

  // The first's task was neither cancelled nor run again: it ends once, succeeded.
  ASSERT_TRUE(touch(release));
  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks);
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 1) << tasks->dump();
  EXPECT_EQ(read_file(out), "ran\n");

  // The first leaves: the second joins within its backoff and takes work.
  cluster.kill_worker(0, SIGTERM);
  ASSERT_TRUE(wait_until(
      [&] {
        auto now = workers_named(cluster, "render01");
        return now.size() == 1 && now[0]["pid"] == second && now[0]["alive"].get<bool>();
      },
      60s))
      << cluster.last_cli() << "\n"
      << read_file(clone_log);
  auto next = cluster.submit({"noop", "--tasks", "2"});
  ASSERT_TRUE(next) << cluster.last_cli();
  auto next_done = cluster.wait_for_final_state(*next, 60s);
  ASSERT_TRUE(next_done);
  EXPECT_EQ((*next_done)["job"]["state"], "succeeded");
}

}  // namespace
}  // namespace farmhand::e2e
