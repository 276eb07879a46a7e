// End-to-end: the broker is secure by default (ARCHITECTURE.md, "Security model").
// With no keys in the config, the worker endpoint has CurveZMQ with the key pair
// the broker makes in its state dir, its local workers use it with no setup, a
// worker elsewhere is admitted by dropping its public key into
// STATE_DIR/keys/workers, and a plain endpoint beyond loopback is refused at
// start. Real binaries on ipc:// endpoints (tests/support/cluster.h); nothing
// here ever listens beyond loopback.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include <arpa/inet.h>
#include <farmhand.pb.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/wire.h"

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kLimit = 120s;

// Counts a socket's finished handshakes, failed and succeeded.
class HandshakeMonitor : public zmq::monitor_t {
 public:
  void on_event_handshake_failed_no_detail(const zmq_event_t&, const char*) override { ++failed; }

  void on_event_handshake_failed_protocol(const zmq_event_t&, const char*) override { ++failed; }

  void on_event_handshake_failed_auth(const zmq_event_t&, const char*) override { ++failed; }

  void on_event_handshake_succeeded(const zmq_event_t&, const char*) override { ++succeeded; }

  void poll() {
    while (check_event(0)) {
    }
  }

  int failed = 0;
  int succeeded = 0;
};

// A process that poses as a worker with no key: a raw DEALER that says Ready and
// reports success for whatever it is assigned, and forges a result up front.
class ForgingWorker {
 public:
  ForgingWorker(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    monitor_.init(socket_, "inproc://forger-monitor",
                  ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    socket_.connect(endpoint);
    send_ready();
    wire::WorkerMessage forged;
    auto* result = forged.mutable_result();
    result->mutable_ref()->set_job_id(1);
    result->mutable_ref()->set_task(0);
    result->mutable_ref()->set_lease(1);
    result->set_attempt(1);
    result->set_succeeded(true);
    socket_.send(common::to_zmq(forged), zmq::send_flags::none);
  }

  // Handles what the broker sent: Welcome registers it, each Assign gets a forged success.
  void pump() {
    monitor_.poll();
    for (zmq::message_t frame; socket_.recv(frame, zmq::recv_flags::dontwait);) {
      ++received_;
      wire::BrokerMessage msg;
      if (!msg.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) continue;
      if (msg.has_welcome()) registered_ = true;
      if (msg.has_reconnect()) send_ready();
      if (msg.has_assign()) {
        wire::WorkerMessage out;
        *out.mutable_result()->mutable_ref() = msg.assign().ref();
        out.mutable_result()->set_attempt(msg.assign().attempt());
        out.mutable_result()->set_succeeded(true);
        socket_.send(common::to_zmq(out), zmq::send_flags::none);
      }
    }
  }

  bool registered() const { return registered_; }

  int received() const { return received_; }

  const HandshakeMonitor& monitor() const { return monitor_; }

 private:
  void send_ready() {
    wire::WorkerMessage ready;
    ready.mutable_ready()->set_version(common::kProtocolVersion);
    ready.mutable_ready()->set_name("forger");
    ready.mutable_ready()->set_slots(8);
    socket_.send(common::to_zmq(ready), zmq::send_flags::none);
  }

  zmq::socket_t socket_;
  HandshakeMonitor monitor_;
  bool registered_ = false;
  int received_ = 0;
};

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(SecurityE2ETest, DefaultConfigNeverRegistersAWorkerWithoutAKeyNorTakesItsForgedResults) {
  ClusterOptions options;
  options.local_workers = 2;
  options.commands_yaml =
      "  mark:\n"
      "    argv: [/bin/sh, -c, 'echo \"frame $2\" >> \"$1\"', sh, \"{out}\", \"{frame}\"]\n"
      "    params:\n"
      "      out: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  zmq::context_t ctx(1);
  ForgingWorker forger(ctx, cluster.worker_endpoint());
  // The broker refuses the handshake: no session, so nothing it sent arrives.
  ASSERT_TRUE(wait_until(
      [&] {
        forger.pump();
        return forger.monitor().failed > 0 || forger.registered();
      },
      kLimit));
  EXPECT_FALSE(forger.registered());
  EXPECT_EQ(forger.monitor().succeeded, 0);

  // Every frame is really run by a local worker: none is "done" by the forger.
  const std::string marks = cluster.path("marks.txt");
  auto job = cluster.submit(
      {"command", "mark", "--frames", "1-20", "--chunk", "1", "--param", "out=" + marks});
  ASSERT_TRUE(job) << cluster.last_cli();
  std::optional<Json> done;
  ASSERT_TRUE(wait_until(
      [&] {
        forger.pump();
        done = cluster.status_json(*job);
        if (!done) return false;
        const std::string state = (*done)["job"]["state"];
        return state == "succeeded" || state == "failed" || state == "cancelled";
      },
      kLimit))
      << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
  std::map<int, int> runs;
  std::istringstream lines(read_file(marks));
  std::string word;
  for (int frame = 0; lines >> word >> frame;) ++runs[frame];
  std::map<int, int> once;
  for (int frame = 1; frame <= 20; ++frame) once[frame] = 1;
  EXPECT_EQ(runs, once) << read_file(marks);

  forger.pump();
  EXPECT_FALSE(forger.registered());
  EXPECT_EQ(forger.received(), 0);
  auto alive = cluster.alive_workers();
  ASSERT_TRUE(alive) << cluster.last_cli();
  EXPECT_EQ(sorted(*alive), (std::vector<std::string>{"local-1", "local-2"}));
  CliResult workers = cluster.run_cli({"workers"});
  EXPECT_EQ(workers.out.find("forger"), std::string::npos) << describe(workers);
}

TEST(SecurityE2ETest, WorkerJoinsOnceItsKeyIsInTheStateDirAndTheBrokerReloads) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  // On the worker's host: a key pair. On the broker's host: its public key.
  const std::string prefix = cluster.path("render-07");
  CliResult keygen = cluster.run_cli({"admin", "keygen", prefix});
  ASSERT_EQ(keygen.exit_code, 0) << describe(keygen);
  CliResult broker_key =
      cluster.run_binary("farmhandd", {"--print-worker-key", "--config", cluster.config_path(),
                                       "--state-dir", cluster.state_dir()});
  ASSERT_EQ(broker_key.exit_code, 0) << describe(broker_key);
  const std::string server_key = broker_key.out.substr(0, broker_key.out.find('\n'));
  EXPECT_EQ(server_key, common::read_curve_key_file(cluster.state_dir() + "/keys/broker.pub")
                            .value_or("no broker.pub"));

  StandaloneWorker worker{"render-07",
                          1,
                          {"--curve-server-key", server_key, "--curve-key-file", prefix + ".key"},
                          /*alive=*/false};
  ASSERT_TRUE(cluster.add_worker(worker));
  auto worker_public = common::read_curve_key_file(prefix + ".pub");
  ASSERT_TRUE(worker_public);
  const std::string refused = "key " + *worker_public + " not authorised";
  ASSERT_TRUE(wait_until(
      [&] { return read_file(cluster.broker_log_path()).find(refused) != std::string::npos; },
      kLimit))
      << read_file(cluster.broker_log_path());
  auto before = cluster.alive_workers();
  ASSERT_TRUE(before) << cluster.last_cli();
  EXPECT_EQ(*before, (std::vector<std::string>{"local-1"}));

  fs::copy_file(prefix + ".pub", cluster.state_dir() + "/keys/workers/render-07.pub");
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  std::optional<std::vector<std::string>> alive;
  EXPECT_TRUE(wait_until(
      [&] {
        alive = cluster.alive_workers();
        return alive && std::find(alive->begin(), alive->end(), "render-07") != alive->end();
      },
      kLimit))
      << cluster.last_cli() << "\n"
      << read_file(cluster.worker_log_path(0));
  auto job = cluster.submit({"noop", "--tasks", "20"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, kLimit);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
}

TEST(SecurityE2ETest, BrokerKeyPairIsMadeOnceKeptAcrossRestartsAndRefusedWhenExposedOrBroken) {
  ClusterOptions options;
  options.local_workers = 1;
  options.workers = {StandaloneWorker{"w1"}};  // keyed and admitted by the cluster
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string key_file = cluster.state_dir() + "/keys/broker.key";
  const std::string pub_file = cluster.state_dir() + "/keys/broker.pub";
  EXPECT_EQ(fs::status(key_file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto first = common::read_curve_key_file(pub_file);
  ASSERT_TRUE(first) << first.error().reason;
  EXPECT_TRUE(fs::is_directory(cluster.state_dir() + "/keys/workers"));
  const std::string secured = "worker endpoint secured with CurveZMQ server_key=" + *first;
  EXPECT_EQ(occurrences(read_file(cluster.broker_log_path()), secured), 1u);

  // The same key after a restart: the standalone worker (holding the old public
  // key) and the local worker both come back.
  cluster.kill_broker(SIGTERM);
  ASSERT_TRUE(cluster.restart_broker());
  EXPECT_EQ(common::read_curve_key_file(pub_file).value_or("gone"), *first);
  EXPECT_EQ(occurrences(read_file(cluster.broker_log_path()), secured), 2u);
  auto job = cluster.submit({"noop", "--tasks", "10"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, kLimit);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << *done;
  cluster.kill_broker(SIGTERM);

  const std::vector<std::string> start = {"--config",          cluster.config_path(), "--state-dir",
                                          cluster.state_dir(), "--local-workers",     "0"};
  // A secret key others may read is refused, and kept as it is.
  fs::permissions(key_file, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  CliResult exposed = cluster.run_binary("farmhandd", start);
  EXPECT_EQ(exposed.exit_code, 1) << describe(exposed);
  EXPECT_EQ(exposed.err,
            "farmhandd: key file " + key_file + " has mode 0644, wider than 0600: chmod 600 it\n");
  fs::permissions(key_file, fs::perms::owner_read | fs::perms::owner_write);
  // A damaged key is refused, never replaced by a new one.
  std::ofstream(key_file, std::ios::trunc) << "garbage\n";
  CliResult broken = cluster.run_binary("farmhandd", start);
  EXPECT_EQ(broken.exit_code, 1) << describe(broken);
  EXPECT_EQ(broken.err,
            "farmhandd: no CURVE key in " + key_file + " (a line of 40 Z85 characters)\n");
  EXPECT_EQ(read_file(key_file), "garbage\n");
}

// Holds a TCP port on 127.0.0.1 while it lives, so that nothing else can listen
// on that port on any address (0.0.0.0 included): a broker that got as far as
// binding there fails with "address in use" instead of listening beyond loopback.
class LoopbackPortGuard {
 public:
  LoopbackPortGuard() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 || ::listen(fd_, 1) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
      return;
    }
    port_ = ntohs(address.sin_port);
  }

  ~LoopbackPortGuard() {
    if (fd_ >= 0) ::close(fd_);
  }

  LoopbackPortGuard(const LoopbackPortGuard&) = delete;
  LoopbackPortGuard& operator=(const LoopbackPortGuard&) = delete;

  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(SecurityE2ETest, PlainClientEndpointBeyondLoopbackIsRefusedUnlessAllowInsecure) {
  Cluster cluster;  // not started: its binaries, environment and directory
  LoopbackPortGuard guard;
  ASSERT_NE(guard.port(), 0);
  const std::string endpoint = "tcp://0.0.0.0:" + std::to_string(guard.port());
  auto write_config = [&](const std::string& name, const std::string& more) {
    std::ofstream(cluster.path(name))
        << "broker:\n  client_endpoint: " << endpoint << "\n  worker_endpoint: ipc://"
        << cluster.path("w.ipc") << "\n"
        << more;
    return cluster.path(name);
  };
  const std::string open = write_config("open.yaml", "");
  const std::string line = "client endpoint " + endpoint +
                           " listens beyond loopback without CurveZMQ: set "
                           "broker.client_curve_secret_key_file, or allow_insecure: true";
  CliResult refused = cluster.run_binary(
      "farmhandd",
      {"--config", open, "--state-dir", cluster.path("state"), "--local-workers", "0"});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_EQ(refused.err, "farmhandd: " + line + "\n");
  CliResult checked = cluster.run_binary("farmhandd", {"--check-config", open});
  EXPECT_EQ(checked.exit_code, 1) << describe(checked);
  EXPECT_EQ(checked.err, open + ": " + line + "\n");

  // allow_insecure: the broker goes on to bind, which fails only because the
  // guard holds the port.
  const std::string allowed = write_config("allowed.yaml", "  allow_insecure: true\n");
  CliResult accepted = cluster.run_binary(
      "farmhandd",
      {"--config", allowed, "--state-dir", cluster.path("state"), "--local-workers", "0"});
  EXPECT_EQ(accepted.err.find("beyond loopback"), std::string::npos) << describe(accepted);
  EXPECT_NE(accepted.err.find("cannot bind " + endpoint), std::string::npos) << describe(accepted);
  CliResult allowed_check = cluster.run_binary("farmhandd", {"--check-config", allowed});
  EXPECT_EQ(allowed_check.exit_code, 0) << describe(allowed_check);
}

}  // namespace
}  // namespace farmhand::e2e

namespace farmhand::e2e {
namespace {

// As root, whether the user `nobody` may connect to the unix socket at `path`
// (a child drops to it and tries); nullopt when not root.
std::optional<bool> nobody_can_connect(const std::string& path) {
  if (::getuid() != 0) return std::nullopt;
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::_exit(rc == 0 ? 0 : (errno == EACCES ? 1 : 2));
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) return std::nullopt;
  return WEXITSTATUS(status) == 0;
}

TEST(SecurityE2ETest, LocalWorkersUseAnEndpointOnlyTheBrokersUserCanReach) {
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string socket_path = cluster.state_dir() + "/local-workers.ipc";

  struct stat st {};

  ASSERT_EQ(::stat(socket_path.c_str(), &st), 0) << socket_path;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(
      read_file(cluster.broker_log_path()).find("local_workers_endpoint=ipc://" + socket_path),
      std::string::npos);
  // The local workers need no key: none is made for them.
  auto job = cluster.submit({"noop", "--tasks", "20"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
  if (auto reachable = nobody_can_connect(socket_path)) {
    EXPECT_FALSE(*reachable) << "another user could connect to the local workers' endpoint";
  }
}

}  // namespace
}  // namespace farmhand::e2e
