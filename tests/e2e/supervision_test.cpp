// End-to-end: what keeps workers attached to the broker — the local-worker
// supervisor, reconnection after a broker restart, and graceful shutdown.
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

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
  ASSERT_TRUE(cluster.wait_for_running(*job, 1, 30s)) << cluster.last_cli();

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

// Stands in for systemd: a datagram socket exported as NOTIFY_SOCKET (with a watchdog of
// WATCHDOG_USEC) to what the test starts, collecting what farmhandd tells it.
class FakeServiceManager {
 public:
  explicit FakeServiceManager(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    setenv("WATCHDOG_USEC", "400000", 1);  // 0.4 s: pings every 0.2 s
  }

  ~FakeServiceManager() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    close(fd_);
  }

  bool bound() const { return bound_; }

  // Waits for a datagram containing `line` (e.g. "READY=1"); keeps what came before.
  bool wait_for(const std::string& line, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      for (size_t i = seen_; i < received_.size(); ++i) {
        if (has_line(received_[i], line)) {
          seen_ = i + 1;
          return true;
        }
      }
      seen_ = received_.size();
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) == 1) {
        char buf[4096];
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) received_.emplace_back(buf, static_cast<size_t>(n));
      }
    }
    return false;
  }

  std::string all() const {
    std::string out;
    for (const auto& m : received_) out += "[" + m + "] ";
    return out;
  }

 private:
  static bool has_line(const std::string& message, const std::string& line) {
    size_t at = 0;
    while (at <= message.size()) {
      size_t end = message.find('\n', at);
      if (end == std::string::npos) end = message.size();
      if (message.compare(at, end - at, line) == 0) return true;
      at = end + 1;
    }
    return false;
  }

  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::vector<std::string> received_;
  size_t seen_ = 0;
};

// What farmhandd.service relies on (Type=notify, WatchdogSec, ExecReload): READY once it
// serves, watchdog pings from the event loop, RELOADING then READY around a SIGHUP, and
// STOPPING on SIGTERM.
TEST(SupervisionE2ETest, BrokerTellsTheServiceManagerReadyWatchdogReloadAndStopping) {
  testing_support::TempDir sockets("fh-notify");
  FakeServiceManager systemd(sockets.file("notify"));
  ASSERT_TRUE(systemd.bound());
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  EXPECT_TRUE(systemd.wait_for("READY=1", 10s)) << systemd.all();
  // Pings keep coming while the loop turns, not just one.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(systemd.wait_for("WATCHDOG=1", 5s)) << "ping " << i << ": " << systemd.all();
  }
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  EXPECT_TRUE(systemd.wait_for("RELOADING=1", 10s)) << systemd.all();
  EXPECT_TRUE(systemd.wait_for("READY=1", 10s)) << systemd.all();
  ASSERT_EQ(kill(cluster.broker_pid(), SIGTERM), 0);
  EXPECT_TRUE(systemd.wait_for("STOPPING=1", 10s)) << systemd.all();
  EXPECT_TRUE(wait_until([&] { return !cluster.broker_running(); }, 30s));
}

}  // namespace
}  // namespace farmhand::e2e
