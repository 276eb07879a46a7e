// End-to-end tests of the farm: the real farmhandd, farmhand-worker and farmhand
// binaries on ipc:// endpoints in a fresh temporary directory (tests/support/cluster.h).
// Every wait polls a condition with a deadline; the deadlines bound a hung test and
// are never timing expectations.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/temp_dir.h"
#include <farmhand.pb.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/wire.h"

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

constexpr auto kJobLimit = 120s;

uint64_t count_of(const Json& status, const std::string& state) {
  return status["job"]["counts"][state].get<uint64_t>();
}

// How often each frame appears in a file of "frame N" lines; other lines go to `junk`.
std::map<int64_t, int> frame_counts(const std::string& text, std::vector<std::string>& junk) {
  std::map<int64_t, int> counts;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word;
    int64_t frame = 0;
    if (words >> word >> frame && word == "frame" && words.eof()) {
      counts[frame]++;
    } else {
      junk.push_back(line);
    }
  }
  return counts;
}

std::vector<pid_t> read_pids(const std::string& path) {
  std::vector<pid_t> pids;
  std::istringstream in(read_file(path));
  for (pid_t pid = 0; in >> pid;) pids.push_back(pid);
  return pids;
}

std::string live_pids_text(const std::vector<pid_t>& pids) {
  std::string text;
  for (pid_t pid : pids) {
    if (process_alive(pid)) text += std::to_string(pid) + " ";
  }
  return text.empty() ? "none" : text;
}

// ------------------------------------------------------------------ dispatch at scale

TEST(FarmE2ETest, TenThousandNoopTasksOnTwoWorkersEachSucceedExactlyOnce) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 4;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  auto job = cluster.submit({"noop", "--tasks", "10000"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << "job " << *job << " not final: " << cluster.last_cli();

  EXPECT_EQ((*final_status)["job"]["state"], "succeeded");
  EXPECT_EQ((*final_status)["job"]["task_count"], 10000u);
  EXPECT_EQ(count_of(*final_status, "succeeded"), 10000u);
  for (const char* state : {"waiting", "queued", "running", "failed", "dead", "cancelled"}) {
    EXPECT_EQ(count_of(*final_status, state), 0u) << state;
  }

  auto tasks = cluster.status_json(*job, {"--tasks", "--limit", "10000"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  const Json& page = (*tasks)["tasks"];
  ASSERT_EQ(page.size(), 10000u);
  std::set<uint64_t> indices;
  size_t not_once = 0;
  for (const Json& task : page) {
    indices.insert(task["index"].get<uint64_t>());
    if (task["state"] != "succeeded" || task["attempts"] != 1) {
      if (++not_once <= 5) ADD_FAILURE() << "task not succeeded at its first attempt: " << task;
    }
  }
  EXPECT_EQ(not_once, 0u);
  EXPECT_EQ(indices.size(), 10000u);
  EXPECT_EQ(*indices.begin(), 0u);
  EXPECT_EQ(*indices.rbegin(), 9999u);
}

// ------------------------------------------------------------------ crashes

TEST(FarmE2ETest, BrokerKilledMidJobRestartsAndFinishesWithoutRerunningFinishedTasks) {
  constexpr int kFrames = 500;
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 2;
  const uint64_t total_slots = static_cast<uint64_t>(options.local_workers) * options.local_slots;
  // Each task appends its frame to a file, so reruns are visible after the fact.
  options.commands_yaml =
      "  append:\n"
      "    argv: [/bin/sh, -c, 'echo \"frame $1\" >> \"$2\"; sleep 0.05', sh, \"{frame}\", "
      "\"{out}\"]\n"
      "    params:\n"
      "      out: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string out = cluster.path("frames.txt");

  auto job = cluster.submit({"command", "append", "--frames", "1-" + std::to_string(kFrames),
                             "--chunk", "1", "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(wait_until(
      [&] {
        auto status = cluster.status_json(*job);
        return status && count_of(*status, "succeeded") >= 100;
      },
      kJobLimit))
      << "no progress: " << cluster.last_cli();

  // A job accepted just before the crash must survive it.
  auto late = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(late) << cluster.last_cli();
  // What the broker reported as succeeded was committed before the reply left it.
  auto before = cluster.status_json(*job, {"--state", "succeeded", "--limit", "10000"});
  ASSERT_TRUE(before) << cluster.last_cli();
  cluster.kill_broker(SIGKILL);
  ASSERT_LT(count_of(*before, "succeeded"), static_cast<uint64_t>(kFrames))
      << "the job finished before the kill: the test did not exercise recovery";
  std::map<uint64_t, uint32_t> finished_before;  // task index -> attempts
  std::set<int64_t> frames_finished_before;
  for (const Json& task : (*before)["tasks"]) {
    finished_before[task["index"].get<uint64_t>()] = task["attempts"].get<uint32_t>();
    frames_finished_before.insert(std::stoll(task["frames"].get<std::string>()));
  }
  ASSERT_GE(finished_before.size(), 100u);

  ASSERT_TRUE(cluster.restart_broker());
  auto after = cluster.status_json(*job, {"--state", "succeeded", "--limit", "10000"});
  ASSERT_TRUE(after) << "job lost after the restart: " << cluster.last_cli();
  EXPECT_EQ((*after)["job"]["task_count"], static_cast<uint64_t>(kFrames));
  std::set<uint64_t> succeeded_after;
  for (const Json& task : (*after)["tasks"]) succeeded_after.insert(task["index"].get<uint64_t>());
  for (const auto& [index, attempts] : finished_before) {
    EXPECT_TRUE(succeeded_after.count(index)) << "task " << index << " lost its success";
  }

  auto late_status = cluster.wait_for_final_state(*late, kJobLimit);
  ASSERT_TRUE(late_status) << "job " << *late << " lost or not final: " << cluster.last_cli();
  EXPECT_EQ((*late_status)["job"]["state"], "succeeded");
  EXPECT_EQ((*late_status)["job"]["task_count"], 3u);

  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << "job " << *job << " not final: " << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded");
  EXPECT_EQ((*final_status)["job"]["task_count"], static_cast<uint64_t>(kFrames));
  EXPECT_EQ(count_of(*final_status, "succeeded"), static_cast<uint64_t>(kFrames));

  auto tasks = cluster.status_json(*job, {"--tasks", "--limit", "10000"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  ASSERT_EQ((*tasks)["tasks"].size(), static_cast<size_t>(kFrames));
  for (const Json& task : (*tasks)["tasks"]) {
    auto it = finished_before.find(task["index"].get<uint64_t>());
    if (it != finished_before.end()) {
      EXPECT_EQ(task["attempts"].get<uint32_t>(), it->second)
          << "task finished before the kill ran again: " << task;
    }
  }

  std::vector<std::string> junk;
  auto counts = frame_counts(read_file(out), junk);
  EXPECT_TRUE(junk.empty()) << "unexpected line: " << junk.front();
  uint64_t repeated = 0;
  for (int64_t frame = 1; frame <= kFrames; ++frame) {
    int n = counts.count(frame) ? counts[frame] : 0;
    EXPECT_GE(n, 1) << "frame " << frame << " never ran";
    if (n > 1) ++repeated;
    if (frames_finished_before.count(frame)) {
      EXPECT_EQ(n, 1) << "frame " << frame << " was reported succeeded before the kill";
    }
  }
  EXPECT_EQ(counts.size(), static_cast<size_t>(kFrames)) << "frames outside 1-" << kFrames;
  // Only work the broker had not committed at the kill may run twice: the tasks
  // running then (one per slot) and, because a turn sends new assignments before
  // it commits, results that arrived in that last turn (again one per slot).
  EXPECT_LE(repeated, 2 * total_slots);
}

TEST(FarmE2ETest, WorkerKilledMidTaskIsRetriedOnAnotherWorkerAfterLeaseExpiry) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{"w1", 1}, {"w2", 1}};
  // exec keeps the recorded pid: it is the process that runs until the kill.
  options.commands_yaml =
      "  hold:\n"
      "    argv: [/bin/sh, -c, 'echo \"task $1 started\"; echo $$ >> \"$2\"; exec sleep 3', sh, "
      "\"{task}\", \"{pids}\"]\n"
      "    params:\n"
      "      pids: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string pid_file = cluster.path("pids.txt");

  auto job = cluster.submit({"command", "hold", "--frames", "1", "--param", "pids=" + pid_file});
  ASSERT_TRUE(job) << cluster.last_cli();
  std::string first_worker;
  ASSERT_TRUE(wait_until(
      [&] {
        auto status = cluster.status_json(*job);
        if (!status || (*status)["running"].empty()) return false;
        first_worker = (*status)["running"][0]["worker"].get<std::string>();
        return !first_worker.empty() && read_pids(pid_file).size() == 1;
      },
      kJobLimit))
      << "task never ran: " << cluster.last_cli();
  auto victim = cluster.worker_index(first_worker);
  ASSERT_TRUE(victim) << "running on unknown worker " << first_worker;
  const std::string survivor = cluster.worker_name(*victim == 0 ? 1 : 0);
  const pid_t first_task_pid = read_pids(pid_file).at(0);

  cluster.kill_worker(*victim, SIGKILL);
  // The task process dies with its worker (PR_SET_PDEATHSIG).
  EXPECT_TRUE(wait_until([&] { return !process_alive(first_task_pid); }, 30s))
      << "task pid " << first_task_pid << " outlived its killed worker";

  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << "job " << *job << " not final: " << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded");
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  ASSERT_EQ((*tasks)["tasks"].size(), 1u);
  EXPECT_EQ((*tasks)["tasks"][0]["state"], "succeeded");
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 2u);
  EXPECT_EQ(read_pids(pid_file).size(), 2u);

  // The log of the accepted attempt: the second one, on the other worker.
  auto logs = cluster.cli_json({"logs", std::to_string(*job)});
  ASSERT_TRUE(logs) << cluster.last_cli();
  ASSERT_EQ(logs->size(), 1u) << *logs;
  EXPECT_EQ((*logs)[0]["attempt"], 2u);
  EXPECT_EQ((*logs)[0]["worker"], survivor);
  EXPECT_NE((*logs)[0]["text"].get<std::string>().find("task 0 started"), std::string::npos)
      << (*logs)[0];
}

// ------------------------------------------------------------------ stopping work

// The shell records its pid and that of a grandchild that ignores SIGTERM, so only
// a kill of the whole process group ends it.
constexpr const char* kHangTemplate =
    "  hang:\n"
    "    argv: [/bin/sh, -c, 'echo $$ >> \"$1\"; (trap \"\" TERM; exec sleep 60) & echo $! >> "
    "\"$1\"; wait', sh, \"{pids}\"]\n"
    "    params:\n"
    "      pids: { pattern: '^[A-Za-z0-9_./-]+$' }\n";

TEST(FarmE2ETest, TimedOutTaskIsKilledWithItsProcessGroupAndEndsDeadWithReason) {
  ClusterOptions options;
  options.commands_yaml = kHangTemplate;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string pid_file = cluster.path("pids.txt");

  auto job = cluster.submit({"command", "hang", "--frames", "1", "--timeout", "1", "--max-attempts",
                             "2", "--param", "pids=" + pid_file});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << "job " << *job << " not final: " << cluster.last_cli();

  const std::string reason = "timed out after 1 s";
  EXPECT_EQ((*final_status)["job"]["state"], "failed");
  EXPECT_EQ(count_of(*final_status, "dead"), 1u);
  ASSERT_FALSE((*final_status)["last_errors"].empty()) << *final_status;
  EXPECT_EQ((*final_status)["last_errors"][0]["error"], reason);

  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  ASSERT_EQ((*tasks)["tasks"].size(), 1u);
  EXPECT_EQ((*tasks)["tasks"][0]["state"], "dead");
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 2u);
  EXPECT_EQ((*tasks)["tasks"][0]["error"], reason);

  CliResult human = cluster.run_cli({"status", std::to_string(*job)});
  ASSERT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_NE(human.out.find(reason), std::string::npos) << human.out;

  // Two attempts, each a shell and its SIGTERM-ignoring grandchild.
  std::vector<pid_t> pids = read_pids(pid_file);
  EXPECT_EQ(pids.size(), 4u);
  EXPECT_TRUE(
      wait_until([&] { return std::none_of(pids.begin(), pids.end(), process_alive); }, 30s))
      << "still alive: " << live_pids_text(pids);
}

TEST(FarmE2ETest, CancelStopsRunningProcessesOfTheJob) {
  ClusterOptions options;
  options.commands_yaml = kHangTemplate;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string pid_file = cluster.path("pids.txt");

  // Two tasks, one on each local worker.
  auto job = cluster.submit({"command", "hang", "--frames", "1-2", "--param", "pids=" + pid_file});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(wait_until([&] { return read_pids(pid_file).size() == 4; }, kJobLimit))
      << "tasks did not start: " << read_file(pid_file);
  std::vector<pid_t> pids = read_pids(pid_file);
  ASSERT_TRUE(std::all_of(pids.begin(), pids.end(), process_alive)) << read_file(pid_file);

  auto cancelled = cluster.cli_json({"cancel", std::to_string(*job)});
  ASSERT_TRUE(cancelled) << cluster.last_cli();
  EXPECT_EQ((*cancelled)["state"], "cancelled");

  EXPECT_TRUE(
      wait_until([&] { return std::none_of(pids.begin(), pids.end(), process_alive); }, 30s))
      << "still alive: " << live_pids_text(pids);
  auto status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["state"], "cancelled");
  EXPECT_EQ(count_of(*status, "cancelled"), 2u);
  EXPECT_EQ(count_of(*status, "succeeded"), 0u);
  EXPECT_TRUE((*status)["running"].empty()) << *status;
}

// ------------------------------------------------------------------ hostile input

zmq::socket_t dealer(zmq::context_t& ctx, const std::string& endpoint) {
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  return socket;
}

std::optional<zmq::message_t> receive(zmq::socket_t& socket, std::chrono::milliseconds timeout) {
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, 1, timeout);
  if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  zmq::message_t msg;
  if (!socket.recv(msg, zmq::recv_flags::none)) return std::nullopt;
  return msg;
}

void send_bytes(zmq::socket_t& socket, const std::string& bytes) {
  socket.send(zmq::buffer(bytes), zmq::send_flags::none);
}

void send_multipart(zmq::socket_t& socket, const std::vector<std::string>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    socket.send(zmq::buffer(parts[i]),
                i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::string random_bytes(std::mt19937& rng, size_t size) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(byte(rng));
  return out;
}

// Sends a valid list request and collects every client reply until its own, so
// all earlier messages on this connection have been handled.
::testing::AssertionResult client_round_trip(zmq::socket_t& socket, uint64_t request_id,
                                             std::vector<wire::ClientReply>& earlier) {
  wire::ClientRequest request;
  request.set_version(common::kProtocolVersion);
  request.set_request_id(request_id);
  request.mutable_list();
  send_bytes(socket, request.SerializeAsString());
  while (auto msg = receive(socket, 30s)) {
    wire::ClientReply reply;
    if (!reply.ParseFromArray(msg->data(), static_cast<int>(msg->size()))) {
      return ::testing::AssertionFailure() << "unparsable reply of " << msg->size() << " bytes";
    }
    if (reply.request_id() == request_id && reply.ok() && reply.has_list()) {
      return ::testing::AssertionSuccess();
    }
    earlier.push_back(std::move(reply));
  }
  return ::testing::AssertionFailure() << "no reply to list request " << request_id;
}

// Waits for the broker's next message of kind `body`, skipping others.
::testing::AssertionResult expect_broker_message(zmq::socket_t& socket,
                                                 wire::BrokerMessage::BodyCase body,
                                                 wire::BrokerMessage* out = nullptr) {
  while (auto msg = receive(socket, 30s)) {
    wire::BrokerMessage reply;
    if (!reply.ParseFromArray(msg->data(), static_cast<int>(msg->size()))) {
      return ::testing::AssertionFailure() << "unparsable broker message";
    }
    if (reply.body_case() == body) {
      if (out != nullptr) *out = std::move(reply);
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no broker message of kind " << body;
}

// A heartbeat from a peer the broker does not know is answered with Reconnect:
// proof that it handled everything sent before on this connection.
::testing::AssertionResult worker_round_trip(zmq::socket_t& socket) {
  wire::WorkerMessage beat;
  beat.mutable_heartbeat();
  send_bytes(socket, beat.SerializeAsString());
  return expect_broker_message(socket, wire::BrokerMessage::kReconnect);
}

// Records connect and disconnect events of a socket.
class ConnectionMonitor : public zmq::monitor_t {
 public:
  void on_event_connected(const zmq_event_t&, const char*) override { ++connected; }

  void on_event_disconnected(const zmq_event_t&, const char*) override { ++disconnected; }

  bool wait_for(const int& counter, int target) {
    return wait_until(
        [&] {
          while (check_event(0)) {
          }
          return counter >= target;
        },
        30s, 5ms);
  }

  int connected = 0;
  int disconnected = 0;
};

// A message over what the broker's socket admits (ZMQ_MAXMSGSIZE) makes it drop
// the connection before anything is parsed.
::testing::AssertionResult send_oversized(zmq::context_t& ctx, const std::string& endpoint,
                                          const std::string& monitor_name, size_t bytes) {
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  ConnectionMonitor monitor;
  monitor.init(socket, "inproc://" + monitor_name, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED);
  socket.connect(endpoint);
  if (!monitor.wait_for(monitor.connected, 1)) {
    return ::testing::AssertionFailure() << "no connection to " << endpoint;
  }
  send_bytes(socket, std::string(bytes, 'x'));
  if (!monitor.wait_for(monitor.disconnected, 1)) {
    return ::testing::AssertionFailure()
           << "the broker kept the connection after a " << bytes << "-byte message";
  }
  return ::testing::AssertionSuccess();
}

TEST(FarmE2ETest, MalformedMessagesOnBothEndpointsLeaveTheBrokerServing) {
  ClusterOptions options;
  options.worker_curve = false;  // raw sockets speak to the worker endpoint
  options.max_client_message_bytes = 65536;
  options.max_worker_message_bytes = 65536;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  zmq::context_t ctx(1);
  std::mt19937 rng(20241126);
  const std::vector<size_t> sizes = {1, 2, 7, 64, 1000, 60000};

  // ---- client endpoint
  {
    zmq::socket_t client = dealer(ctx, cluster.client_endpoint());
    std::vector<wire::ClientReply> replies;
    for (size_t size : sizes) send_bytes(client, random_bytes(rng, size));
    send_bytes(client, "");
    ASSERT_TRUE(client_round_trip(client, 1001, replies));
    for (const auto& reply : replies) EXPECT_FALSE(reply.ok()) << reply.DebugString();

    // A submit cut in the middle of its body.
    wire::ClientRequest submit;
    submit.set_version(common::kProtocolVersion);
    submit.set_request_id(7);
    auto* spec = submit.mutable_submit()->mutable_spec();
    spec->set_kind("noop");
    spec->set_tasks(5);
    spec->set_name(std::string(200, 'n'));
    std::string bytes = submit.SerializeAsString();
    replies.clear();
    send_bytes(client, bytes.substr(0, bytes.size() / 2));
    ASSERT_TRUE(client_round_trip(client, 1002, replies));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_FALSE(replies[0].ok());
    EXPECT_EQ(replies[0].error().rfind("malformed message", 0), 0u) << replies[0].error();

    // A well-formed request in a protocol version the broker does not speak.
    wire::ClientRequest old = submit;
    old.set_version(99);
    replies.clear();
    send_bytes(client, old.SerializeAsString());
    ASSERT_TRUE(client_round_trip(client, 1003, replies));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_FALSE(replies[0].ok());
    EXPECT_EQ(replies[0].error(), "protocol version 99 not supported (broker speaks " +
                                      std::to_string(common::kProtocolVersion) + ")");

    // Multipart junk is dropped without a reply.
    replies.clear();
    send_multipart(client, {"a", "b"});
    send_multipart(client, std::vector<std::string>(20, "junk"));
    send_multipart(client, {random_bytes(rng, 100), "", random_bytes(rng, 100)});
    ASSERT_TRUE(client_round_trip(client, 1004, replies));
    for (const auto& reply : replies) EXPECT_FALSE(reply.ok()) << reply.DebugString();
  }
  // A request over the limit is answered with its size, not dropped in silence;
  // one beyond what the socket admits at all (16 times the limit, at least
  // 16 MB) is cut off before a byte is read.
  {
    zmq::socket_t client = dealer(ctx, cluster.client_endpoint());
    wire::ClientRequest big;
    big.set_version(common::kProtocolVersion);
    big.set_request_id(4242);
    big.mutable_submit()->mutable_spec()->set_kind("noop");
    big.mutable_submit()->mutable_spec()->set_tasks(1);
    big.mutable_submit()->mutable_spec()->set_name(std::string(2'200'000, 'n'));
    send_bytes(client, big.SerializeAsString());
    std::vector<wire::ClientReply> replies;
    ASSERT_TRUE(client_round_trip(client, 1005, replies));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].request_id(), 4242u);
    EXPECT_FALSE(replies[0].ok());
    EXPECT_EQ(replies[0].error(), "request too large: 2.1 MB over 0.1 MB");
  }
  EXPECT_TRUE(send_oversized(ctx, cluster.client_endpoint(), "client-monitor", 17 << 20));

  // ---- worker endpoint
  {
    zmq::socket_t peer = dealer(ctx, cluster.worker_endpoint());
    for (size_t size : sizes) send_bytes(peer, random_bytes(rng, size));
    send_multipart(peer, {"a", "b"});
    send_multipart(peer, std::vector<std::string>(20, "junk"));
    ASSERT_TRUE(worker_round_trip(peer));

    // A Ready cut in half, and a whole Ready in a protocol version the broker does
    // not speak: neither registers a worker.
    wire::WorkerMessage ready;
    ready.mutable_ready()->set_version(common::kProtocolVersion);
    ready.mutable_ready()->set_name("intruder");
    ready.mutable_ready()->set_slots(8);
    ready.mutable_ready()->set_host(std::string(300, 'h'));
    std::string bytes = ready.SerializeAsString();
    send_bytes(peer, bytes.substr(0, bytes.size() / 2));
    ASSERT_TRUE(worker_round_trip(peer));
    ready.mutable_ready()->set_version(99);
    send_bytes(peer, ready.SerializeAsString());
    ASSERT_TRUE(worker_round_trip(peer));

    // A result from a peer that never said Ready: it is told to reconnect.
    wire::WorkerMessage result;
    result.mutable_result()->mutable_ref()->set_job_id(1);
    result.mutable_result()->mutable_ref()->set_task(0);
    result.mutable_result()->mutable_ref()->set_lease(42);
    result.mutable_result()->set_succeeded(true);
    send_bytes(peer, result.SerializeAsString());
    ASSERT_TRUE(expect_broker_message(peer, wire::BrokerMessage::kReconnect));

    // A registered worker reporting a task that never existed gets an ack and
    // changes nothing; then it leaves.
    zmq::socket_t fake = dealer(ctx, cluster.worker_endpoint());
    wire::WorkerMessage hello;
    hello.mutable_ready()->set_version(common::kProtocolVersion);
    hello.mutable_ready()->set_name("fake");
    hello.mutable_ready()->set_slots(1);
    send_bytes(fake, hello.SerializeAsString());
    ASSERT_TRUE(expect_broker_message(fake, wire::BrokerMessage::kWelcome));
    result.mutable_result()->mutable_ref()->set_job_id(999);
    send_bytes(fake, result.SerializeAsString());
    EXPECT_TRUE(expect_broker_message(fake, wire::BrokerMessage::kAck));
    wire::WorkerMessage bye;
    bye.mutable_disconnect();
    send_bytes(fake, bye.SerializeAsString());
    ASSERT_TRUE(worker_round_trip(fake));
  }
  EXPECT_TRUE(send_oversized(ctx, cluster.worker_endpoint(), "worker-monitor", 1 << 20));

  // ---- the broker still serves
  ASSERT_TRUE(cluster.broker_running());
  auto jobs = cluster.cli_json({"ls"});
  ASSERT_TRUE(jobs) << cluster.last_cli();
  EXPECT_TRUE(jobs->empty()) << "garbage created a job: " << *jobs;
  auto workers = cluster.alive_workers();
  ASSERT_TRUE(workers) << cluster.last_cli();
  std::sort(workers->begin(), workers->end());
  EXPECT_EQ(*workers, (std::vector<std::string>{"local-1", "local-2"}));

  auto job = cluster.submit({"noop", "--tasks", "100"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << "job " << *job << " not final: " << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded");
  EXPECT_EQ(count_of(*final_status, "succeeded"), 100u);
  EXPECT_TRUE(cluster.broker_running());
  EXPECT_NE(read_file(cluster.broker_log_path()).find("bad message dropped"), std::string::npos);
}

// ------------------------------------------------------------------ long-polled status

void send_status(zmq::socket_t& socket, uint64_t request_id, uint64_t job, uint32_t wait_ms,
                 uint64_t seen_version) {
  wire::ClientRequest request;
  request.set_version(common::kProtocolVersion);
  request.set_request_id(request_id);
  request.mutable_status()->set_job_id(job);
  request.mutable_status()->set_wait_ms(wait_ms);
  request.mutable_status()->set_seen_version(seen_version);
  send_bytes(socket, request.SerializeAsString());
}

std::optional<wire::ClientReply> next_reply(zmq::socket_t& socket) {
  auto msg = receive(socket, 30s);
  if (!msg) return std::nullopt;
  wire::ClientReply reply;
  if (!reply.ParseFromArray(msg->data(), static_cast<int>(msg->size()))) return std::nullopt;
  return reply;
}

TEST(FarmE2ETest, HeldStatusRequestsAreAnsweredWhenTheJobChangesOrTheirWaitEnds) {
  ClusterOptions options;
  options.local_workers = 0;  // nothing runs: the jobs change only when we act on them
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"noop", "--tasks", "2"});
  ASSERT_TRUE(job) << cluster.last_cli();
  zmq::context_t ctx;
  zmq::socket_t client = dealer(ctx, cluster.client_endpoint());

  // A plain status carries the version to wait on.
  send_status(client, 1, *job, 0, 0);
  auto first = next_reply(client);
  ASSERT_TRUE(first && first->ok() && first->has_status());
  const uint64_t version = first->status().version();
  ASSERT_NE(version, 0u);
  EXPECT_EQ(first->status().job().state(), wire::JOB_QUEUED);

  // Unchanged: held for its whole wait, then answered with the same version.
  const auto asked = std::chrono::steady_clock::now();
  send_status(client, 2, *job, 300, version);
  auto waited = next_reply(client);
  ASSERT_TRUE(waited && waited->ok() && waited->request_id() == 2u);
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 300ms);
  EXPECT_EQ(waited->status().version(), version);

  // A version the client has not seen is news: answered at once, not after 60 s.
  send_status(client, 3, *job, 60'000, version ^ 1);
  auto news = next_reply(client);
  ASSERT_TRUE(news && news->ok() && news->request_id() == 3u) << "a stale version was held";
  EXPECT_EQ(news->status().version(), version);

  // 1,100 held requests: the broker keeps 1,024 and answers the others at once,
  // before the reply to a list request sent after them.
  constexpr uint64_t kFirstId = 1000, kHeld = 1024, kSent = 1100;
  for (uint64_t id = kFirstId; id < kFirstId + kSent; ++id) {
    send_status(client, id, *job, 60'000, version);
  }
  std::vector<wire::ClientReply> at_once;
  ASSERT_TRUE(client_round_trip(client, 99, at_once));
  EXPECT_EQ(at_once.size(), kSent - kHeld);
  for (const auto& reply : at_once) {
    EXPECT_TRUE(reply.ok() && reply.status().version() == version) << reply.ShortDebugString();
  }

  // Cancelling the job answers every held request with the change.
  auto cancelled = cluster.cli_json({"cancel", std::to_string(*job)});
  ASSERT_TRUE(cancelled) << cluster.last_cli();
  std::set<uint64_t> answered;
  for (const auto& reply : at_once) answered.insert(reply.request_id());
  for (uint64_t n = 0; n < kHeld; ++n) {
    auto reply = next_reply(client);
    ASSERT_TRUE(reply) << "only " << n << " of " << kHeld << " held requests answered";
    EXPECT_TRUE(reply->ok());
    EXPECT_EQ(reply->status().job().state(), wire::JOB_CANCELLED);
    EXPECT_NE(reply->status().version(), version);
    answered.insert(reply->request_id());
  }
  EXPECT_EQ(answered.size(), kSent);
  EXPECT_EQ(*answered.begin(), kFirstId);
  EXPECT_EQ(*answered.rbegin(), kFirstId + kSent - 1);

  // A finished job is never held.
  send_status(client, 4, *job, 60'000, answered.empty() ? 0 : version);
  auto done = next_reply(client);
  ASSERT_TRUE(done && done->request_id() == 4u);
  send_status(client, 5, *job, 60'000, done->status().version());
  auto again = next_reply(client);
  ASSERT_TRUE(again && again->request_id() == 5u) << "a cancelled job's status was held";

  // A broker that stops answers what it holds instead of leaving clients hanging.
  auto queued = cluster.submit({"noop", "--tasks", "1"});
  ASSERT_TRUE(queued) << cluster.last_cli();
  send_status(client, 6, *queued, 0, 0);
  auto current = next_reply(client);
  ASSERT_TRUE(current && current->ok());
  send_status(client, 7, *queued, 60'000, current->status().version());
  ASSERT_TRUE(client_round_trip(client, 100, at_once));  // request 7 is held now
  ASSERT_TRUE(cluster.signal_broker(SIGTERM));
  auto released = next_reply(client);
  ASSERT_TRUE(released) << "the stopping broker left a held request unanswered";
  EXPECT_EQ(released->request_id(), 7u);
  EXPECT_EQ(released->status().job().state(), wire::JOB_QUEUED);
}

// ------------------------------------------------------------------ health, pools

// Issue 10: `farmhand admin health` for a monitoring check: a summary, the same
// as JSON, exit 0 while the state store writes (store_fault_test: exit 1 when not).
TEST(FarmE2ETest, AdminHealthOfAServingBrokerSaysHealthyWithItsCountsAndExitsZero) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(done);
  ASSERT_EQ((*done)["job"]["state"], "succeeded");

  CliResult text = cluster.run_cli({"admin", "health"});
  EXPECT_EQ(text.exit_code, 0) << describe(text);
  EXPECT_EQ(text.out.rfind("healthy: the state store writes\n", 0), 0u) << describe(text);
  EXPECT_NE(text.out.find("\njobs: succeeded=1\n"), std::string::npos) << describe(text);
  EXPECT_NE(text.out.find("\ntasks: succeeded=3\n"), std::string::npos) << describe(text);
  EXPECT_NE(text.out.find("\nworkers: 1 alive, 0 silent\n"), std::string::npos) << describe(text);
  EXPECT_EQ(text.err, "");

  auto health = cluster.cli_json({"admin", "health"});
  ASSERT_TRUE(health) << cluster.last_cli();
  EXPECT_EQ((*health)["healthy"], true);
  EXPECT_EQ((*health)["store_error"], "");
  EXPECT_EQ((*health)["jobs"]["succeeded"], 1);
  EXPECT_EQ((*health)["jobs"]["failed"], 0);
  EXPECT_EQ((*health)["tasks"]["succeeded"], 3);
  EXPECT_EQ((*health)["workers_alive"], 1);
  EXPECT_EQ((*health)["held_status_requests"], 0);
  EXPECT_GT((*health)["uptime_s"].get<double>(), 0.0);
}

// Issue 10: a job for a pool no live worker serves was accepted silently and
// waited forever. It is still accepted (exit 0), with a warning, and `status`
// says why it waits; once a worker of the pool joins, it runs.
TEST(FarmE2ETest, SubmitToAPoolNoLiveWorkerServesWarnsAndStatusSaysWhyUntilOneJoins) {
  ClusterOptions options;
  options.local_workers = 1;  // untagged: serves no pool
  options.workers = {{"gpu1", 1, {"--tags", "gpu"}}};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  cluster.kill_worker(0, SIGTERM);  // says goodbye: the broker knows at once
  ASSERT_TRUE(wait_until(
      [&] {
        auto alive = cluster.alive_workers();
        return alive && std::find(alive->begin(), alive->end(), "gpu1") == alive->end();
      },
      30s));
  const std::string why = "no live worker serves pool 'gpu' now; the job waits until one joins";

  CliResult submitted = cluster.run_cli({"submit", "noop", "--tasks", "2", "--pool", "gpu"});
  ASSERT_EQ(submitted.exit_code, 0) << describe(submitted);
  EXPECT_EQ(submitted.err, "farmhand: warning: " + why + "\n") << describe(submitted);
  const uint64_t job = std::stoull(submitted.out);

  auto as_json = cluster.cli_json({"submit", "noop", "--tasks", "1", "--pool", "gpu"});
  ASSERT_TRUE(as_json) << cluster.last_cli();
  EXPECT_EQ((*as_json)["warnings"], Json::array({why}));

  CliResult status = cluster.run_cli({"status", std::to_string(job)});
  EXPECT_EQ(status.exit_code, 0) << describe(status);
  EXPECT_NE(status.out.find("\nwaiting: " + why + "\n"), std::string::npos) << describe(status);
  auto status_json = cluster.status_json(job);
  ASSERT_TRUE(status_json);
  EXPECT_EQ((*status_json)["waiting_reason"], why);

  // A worker of the pool joins: the job runs, and nothing waits any more.
  ASSERT_TRUE(cluster.restart_worker(0));
  auto done = cluster.wait_for_final_state(job, kJobLimit);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
  EXPECT_EQ((*done)["waiting_reason"], "");
  CliResult served = cluster.run_cli({"submit", "noop", "--tasks", "1", "--pool", "gpu"});
  EXPECT_EQ(served.exit_code, 0) << describe(served);
  EXPECT_EQ(served.err, "") << describe(served);
}

// ------------------------------------------------------------------ retention

TEST(FarmE2ETest, FinishedJobsAndTheirEventsAreForgottenKeepFinishedDaysLater) {
  ClusterOptions options;
  options.broker_yaml = "  keep_finished_days: 0.00003\n";  // 2.6 s
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto done = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(done) << cluster.last_cli();
  auto stuck = cluster.submit({"noop", "--tasks", "1", "--pool", "nowhere"});  // never runs
  ASSERT_TRUE(stuck) << cluster.last_cli();
  const std::string published = cluster.path("notes.txt");
  { std::ofstream(published) << "no rule matches this\n"; }
  auto event = cluster.cli_json({"publish", published, "--event-id", "old-event"});
  ASSERT_TRUE(event) << cluster.last_cli();
  auto newest = cluster.submit({"noop", "--tasks", "1"});
  ASSERT_TRUE(newest) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_final_state(*done, kJobLimit));
  ASSERT_TRUE(cluster.wait_for_final_state(*newest, kJobLimit));

  auto gone = [&](uint64_t job) {
    CliResult r = cluster.run_cli({"status", std::to_string(job)});
    return r.exit_code == 1 &&
           r.err.find("unknown job " + std::to_string(job)) != std::string::npos;
  };
  ASSERT_TRUE(wait_until([&] { return gone(*done); }, kJobLimit)) << cluster.last_cli();
  // The event was received after `done` finished, so it may come due a sweep later.
  std::optional<Json> events;
  EXPECT_TRUE(wait_until(
      [&] {
        events = cluster.cli_json({"events"});
        return events && events->empty();
      },
      kJobLimit))
      << "the old event outlived its retention: " << (events ? events->dump() : cluster.last_cli());
  // Not finished, or the newest job (ids must never be reused): kept.
  auto kept = cluster.status_json(*stuck);
  ASSERT_TRUE(kept) << cluster.last_cli();
  EXPECT_EQ((*kept)["job"]["state"], "queued");
  EXPECT_TRUE(cluster.status_json(*newest)) << cluster.last_cli();
  EXPECT_NE(read_file(cluster.broker_log_path()).find("finished work forgotten"),
            std::string::npos);

  // Forgotten in the store too: a restart does not bring it back, and new ids
  // go on after the newest.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  EXPECT_TRUE(gone(*done)) << cluster.last_cli();
  EXPECT_TRUE(cluster.status_json(*stuck)) << cluster.last_cli();
  auto next = cluster.submit({"noop", "--tasks", "1"});
  ASSERT_TRUE(next) << cluster.last_cli();
  EXPECT_EQ(*next, *newest + 1);
  // The event id is free again: a publish with it is a new event.
  auto again = cluster.cli_json({"publish", published, "--event-id", "old-event"});
  ASSERT_TRUE(again) << cluster.last_cli();
  EXPECT_EQ((*again)["duplicate"], false) << *again;
}

// ------------------------------------------------------------------ CurveZMQ

TEST(FarmE2ETest, CurveWorkerEndpointAdmitsOnlyAuthorisedWorkerKeys) {
  testing_support::TempDir keys("fh-keys");
  const std::string auth = keys.file("authorized");
  std::filesystem::create_directory(auth);
  ASSERT_TRUE(common::write_curve_keypair(keys.file("broker")));
  ASSERT_TRUE(common::write_curve_keypair(auth + "/w1"));  // w1.key sits beside w1.pub: ignored
  auto rogue = common::write_curve_keypair(keys.file("rogue"));
  ASSERT_TRUE(rogue);

  ClusterOptions options;
  options.local_workers = 1;  // the broker hands its local workers a key pair of its own
  options.broker_yaml = "  worker_curve_secret_key_file: " + keys.file("broker.key") +
                        "\n  worker_authorized_keys_dir: " + auth + "\n";
  const std::vector<std::string> server = {"--curve-server-key", "@" + keys.file("broker.pub")};
  StandaloneWorker w1{"w1", 1, server, true};
  w1.args.insert(w1.args.end(), {"--curve-key-file", auth + "/w1.key"});
  StandaloneWorker intruder{"rogue", 1, server, /*expect_alive=*/false};
  intruder.args.insert(intruder.args.end(), {"--curve-key-file", keys.file("rogue.key")});
  StandaloneWorker plain{"plain", 1, {}, /*expect_alive=*/false, /*with_key=*/false};
  options.workers = {w1, intruder, plain};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());  // local-1 and w1 joined

  auto job = cluster.submit({"noop", "--tasks", "50"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");

  // The intruder's key is refused by the ZAP handler (and logged); neither it
  // nor the plain worker ever joins.
  const std::string refused = "key " + rogue->public_key + " not authorised";
  EXPECT_TRUE(wait_until(
      [&] { return read_file(cluster.broker_log_path()).find(refused) != std::string::npos; },
      kJobLimit))
      << read_file(cluster.broker_log_path());
  auto alive = cluster.alive_workers();
  ASSERT_TRUE(alive) << cluster.last_cli();
  std::sort(alive->begin(), alive->end());
  EXPECT_EQ(*alive, (std::vector<std::string>{"local-1", "w1"}));

  // A key made with `farmhand admin keygen` is admitted after a reload.
  CliResult keygen = cluster.run_cli({"admin", "keygen", auth + "/late"});
  ASSERT_EQ(keygen.exit_code, 0) << describe(keygen);
  EXPECT_NE(keygen.out.find("public key "), std::string::npos) << keygen.out;
  EXPECT_EQ(
      std::filesystem::status(auth + "/late.key").permissions() & std::filesystem::perms::group_all,
      std::filesystem::perms::none);
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  EXPECT_TRUE(wait_until(
      [&] {
        return read_file(cluster.broker_log_path())
                   .find("authorised worker keys reloaded keys=2") != std::string::npos;
      },
      kJobLimit))
      << read_file(cluster.broker_log_path());

  // Fail closed: a broker whose keys cannot be read does not start.
  const std::string broken = keys.file("broken.yaml");
  std::ofstream(broken) << "broker:\n  client_endpoint: ipc://" << keys.file("c.ipc")
                        << "\n  worker_endpoint: ipc://" << keys.file("w.ipc")
                        << "\n  worker_curve_secret_key_file: " << keys.file("missing.key")
                        << "\n  worker_authorized_keys_dir: " << auth << "\n";
  CliResult refused_start = cluster.run_binary(
      "farmhandd", {"--config", broken, "--state-dir", keys.file("state"), "--local-workers", "0"});
  EXPECT_NE(refused_start.exit_code, 0) << describe(refused_start);
  EXPECT_NE(refused_start.err.find("cannot read key file " + keys.file("missing.key")),
            std::string::npos)
      << describe(refused_start);
}

// ------------------------------------------------------------------ retry

TEST(FarmE2ETest, RetriedTaskKeepsTheLogOfEveryAttemptUnderItsOwnNumber) {
  ClusterOptions options;
  options.local_workers = 1;
  // Each run prints how many runs there have been, then fails.
  options.commands_yaml =
      "  flaky:\n"
      "    argv: [/bin/sh, -c, 'echo run >> \"$1\"; echo \"run $(wc -l < \"$1\")\"; exit 3', sh, "
      "\"{runs}\"]\n"
      "    params:\n"
      "      runs: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string runs = cluster.path("runs.txt");

  auto job = cluster.submit(
      {"command", "flaky", "--frames", "1", "--max-attempts", "3", "--param", "runs=" + runs});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto first = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(first) << "job " << *job << " not final: " << cluster.last_cli();
  ASSERT_EQ((*first)["job"]["state"], "failed") << *first;

  // The retry grants three more attempts, numbered on from the first three.
  ASSERT_TRUE(cluster.cli_json({"retry", std::to_string(*job)})) << cluster.last_cli();
  auto second = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(second) << "job " << *job << " not final: " << cluster.last_cli();
  EXPECT_EQ((*second)["job"]["state"], "failed") << *second;
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  ASSERT_EQ((*tasks)["tasks"].size(), 1u);
  EXPECT_EQ((*tasks)["tasks"][0]["state"], "dead");
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 6u);

  auto logs = cluster.cli_json({"logs", std::to_string(*job), "--task", "0"});
  ASSERT_TRUE(logs) << cluster.last_cli();
  ASSERT_EQ(logs->size(), 6u) << *logs;
  for (uint32_t i = 0; i < 6; ++i) {
    const Json& log = (*logs)[i];
    EXPECT_EQ(log["attempt"], i + 1) << log;
    EXPECT_NE(log["text"].get<std::string>().find("run " + std::to_string(i + 1) + "\n"),
              std::string::npos)
        << log;
    EXPECT_FALSE(log["error"].get<std::string>().empty()) << log;
  }
}

// ------------------------------------------------------------------ live logs

TEST(FarmE2ETest, LogsOfARunningTaskShowWhatItPrintedSoFar) {
  ClusterOptions options;
  options.commands_yaml =
      "  chatty:\n"
      "    argv: [/bin/sh, -c, 'echo rendering frame {frame}; echo to stderr >&2; exec sleep "
      "60']\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"command", "chatty", "--frames", "7"});
  ASSERT_TRUE(job) << cluster.last_cli();

  std::optional<Json> logs;
  ASSERT_TRUE(wait_until(
      [&] {
        logs = cluster.cli_json({"logs", std::to_string(*job), "--task", "0"});
        return logs && logs->size() == 1 && (*logs)[0]["running"] == true &&
               // "to stderr\n", not "to stderr": the logged command line has that too.
               (*logs)[0]["text"].get<std::string>().find("to stderr\n") != std::string::npos;
      },
      kJobLimit))
      << (logs ? logs->dump() : cluster.last_cli());
  const std::string text = (*logs)[0]["text"];
  EXPECT_NE(text.find("rendering frame 7\n"), std::string::npos) << text;
  EXPECT_EQ((*logs)[0]["attempt"], 1);
  EXPECT_TRUE((*logs)[0]["worker"] == "local-1" || (*logs)[0]["worker"] == "local-2") << *logs;

  CliResult human = cluster.run_cli({"logs", std::to_string(*job)});
  EXPECT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_NE(human.out.find("== task 0 attempt 1 on local-"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find(": running, the log so far ==\n"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("\nrendering frame 7\n"), std::string::npos) << human.out;

  // Once it ends, the stored log is the one shown, and it is no longer "running".
  ASSERT_TRUE(cluster.cli_json({"cancel", std::to_string(*job)}));
  ASSERT_TRUE(cluster.wait_for_final_state(*job, kJobLimit));
  std::optional<Json> after = cluster.cli_json({"logs", std::to_string(*job)});
  ASSERT_TRUE(after) << cluster.last_cli();
  for (const auto& log : *after) EXPECT_EQ(log["running"], false) << *after;
}

TEST(FarmE2ETest, CurveClientPortAnswersOnlyAuthorisedClients) {
  testing_support::TempDir keys("fh-keys");
  const std::string clients = keys.file("clients");
  std::filesystem::create_directory(clients);
  ASSERT_TRUE(common::write_curve_keypair(keys.file("broker")));
  ASSERT_TRUE(common::write_curve_keypair(clients + "/alice"));
  auto mallory = common::write_curve_keypair(keys.file("mallory"));
  ASSERT_TRUE(mallory);

  ClusterOptions options;
  options.local_workers = 1;
  options.broker_yaml = "  client_curve_secret_key_file: " + keys.file("broker.key") +
                        "\n  client_authorized_keys_dir: " + clients + "\n";
  options.env = {"FARMHAND_BROKER_KEY=@" + keys.file("broker.pub"),
                 "FARMHAND_KEY_FILE=" + clients + "/alice.key"};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());  // every CLI call so far went through alice's key
  auto job = cluster.submit({"noop", "--tasks", "5"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
  // The job records the key it came with, by name (alice.pub), whatever the client says.
  EXPECT_EQ((*done)["job"]["submitted_key"], "alice") << *done;

  // Mallory's key is refused: she is told so in one line (not "unreachable"
  // after the whole timeout), exits as when the broker cannot be used, and the
  // broker logs her key.
  CliResult refused =
      cluster.run_cli({"ls", "--timeout", "60", "--key-file", keys.file("mallory.key")});
  EXPECT_EQ(refused.exit_code, 3) << describe(refused);
  EXPECT_NE(refused.err.find("refused this client's key"), std::string::npos) << describe(refused);
  EXPECT_NE(refused.err.find("client_authorized_keys_dir"), std::string::npos) << describe(refused);
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << describe(refused);

  // A broker key that is not this broker's: the broker cannot tell the client
  // why (the handshake just ends), so the client waits, then names the key.
  auto other_broker = common::write_curve_keypair(keys.file("other-broker"));
  ASSERT_TRUE(other_broker);
  CliResult wrong_broker = cluster.run_cli(
      {"ls", "--timeout", "2", "--broker-key", "@" + keys.file("other-broker.pub")});
  EXPECT_EQ(wrong_broker.exit_code, 3) << describe(wrong_broker);
  EXPECT_NE(wrong_broker.err.find("is the broker key given"), std::string::npos)
      << describe(wrong_broker);
  const std::string logged = "key " + mallory->public_key + " not authorised (client port)";
  EXPECT_TRUE(wait_until(
      [&] { return read_file(cluster.broker_log_path()).find(logged) != std::string::npos; },
      kJobLimit))
      << read_file(cluster.broker_log_path());

  // A malformed broker key is the CLI's own one-line error.
  CliResult garbled = cluster.run_cli({"ls", "--broker-key", "not-a-key"});
  EXPECT_EQ(garbled.exit_code, 2) << describe(garbled);  // a usage error
  EXPECT_NE(garbled.err.find("must be 40 Z85 characters"), std::string::npos) << describe(garbled);
}

}  // namespace
}  // namespace farmhand::e2e
