// Worker against a fake broker: a ROUTER socket in the test that reads what
// the worker sends and answers as the test says.
#include "workers/worker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "farmhand.pb.h"
#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <unistd.h>
#include <zmq.hpp>

#include "common/logging.h"
#include "workers/work_dir.h"

namespace farmhand::worker {
namespace {

using namespace std::chrono_literals;

// Generous: a limit on a hung test, not a timing expectation.
constexpr auto kWaitLimit = 30s;

class FakeBroker {
 public:
  explicit FakeBroker(const std::string& endpoint) : router_(context_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint);
  }

  // The next message from the worker, or nullopt after kWaitLimit.
  std::optional<wire::WorkerMessage> receive() {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, kWaitLimit) == 0) return std::nullopt;
    zmq::message_t id;
    zmq::message_t payload;
    if (!router_.recv(id) || !router_.recv(payload)) return std::nullopt;
    peer_ = id.to_string();
    wire::WorkerMessage msg;
    if (!msg.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return std::nullopt;
    return msg;
  }

  // The next message that is not a heartbeat.
  std::optional<wire::WorkerMessage> receive_skipping_heartbeats() {
    while (auto msg = receive()) {
      if (!msg->has_heartbeat()) return msg;
    }
    return std::nullopt;
  }

  void send(const wire::BrokerMessage& msg) {
    router_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(msg.SerializeAsString()));
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t router_;
  std::string peer_;
};

// Runs a Worker on its own thread; SIGTERM to that thread stops it.
class RunningWorker {
 public:
  explicit RunningWorker(Worker::Options options) : worker_(std::move(options)) {
    thread_ = std::thread([this] {
      tid_ = gettid();
      result_ = worker_.run();
    });
  }

  ~RunningWorker() { stop(); }

  // Only once the worker has sent something: before, SIGTERM is not yet blocked.
  void stop() {
    if (!thread_.joinable()) return;
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

  const Worker& worker() const { return worker_; }

  // How often the worker's thread has gone to sleep so far (each wake-up ends
  // in one): /proc's voluntary context switches of that thread.
  long sleeps() const {
    std::ifstream status("/proc/self/task/" + std::to_string(tid_.load()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:")) return std::stol(line.substr(24));
    }
    return -1;
  }

 private:
  Worker worker_;
  std::atomic<pid_t> tid_{0};
  Result<void> result_;
  std::thread thread_;
};

Worker::Options options_for(const testing_support::TempDir& tmp) {
  Worker::Options options;
  options.broker = "ipc://" + tmp.file("broker.ipc");
  options.name = "w1";
  options.work_dir = tmp.file("work");
  options.heartbeat_interval = 50ms;
  return options;
}

wire::BrokerMessage welcome() {
  wire::BrokerMessage msg;
  msg.mutable_welcome()->set_heartbeat_ms(50);
  msg.mutable_welcome()->set_lease_ttl_ms(30'000);
  return msg;
}

TEST(WorkerTest, ReadyCarriesARandomInstanceIdPerProcess) {
  testing_support::TempDir tmp;
  Worker a(options_for(tmp));
  Worker b(options_for(tmp));
  EXPECT_EQ(a.instance().size(), 32u) << a.instance();
  EXPECT_EQ(a.instance().find_first_not_of("0123456789abcdef"), std::string::npos) << a.instance();
  EXPECT_NE(a.instance(), b.instance());

  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));
  auto ready = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(ready && ready->has_ready());
  EXPECT_EQ(ready->ready().instance(), running.worker().instance());
}

TEST(WorkerTest, ReadyOffersTheCoresAndMemoryFlagsSetAndSaysHowTasksAreIsolated) {
  testing_support::TempDir tmp;
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  Worker::Options options = options_for(tmp);
  options.cores = 3;
  options.memory_bytes = uint64_t{5} << 30;
  options.cgroups = false;
  RunningWorker running(options);
  auto ready = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(ready && ready->has_ready());
  EXPECT_EQ(ready->ready().cores(), 3u);
  EXPECT_EQ(ready->ready().memory_bytes(), uint64_t{5} << 30);
  EXPECT_EQ(ready->ready().isolation(), "process group (turned off by --no-cgroups)");
}

TEST(WorkerTest, ReadyOffersDetectedCoresAndMemoryWithoutFlags) {
  testing_support::TempDir tmp;
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));
  auto ready = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(ready && ready->has_ready());
  EXPECT_GE(ready->ready().cores(), 1u);
  EXPECT_GT(ready->ready().memory_bytes(), 0u);
  EXPECT_EQ(ready->ready().isolation(), running.worker().isolation());
  EXPECT_TRUE(ready->ready().isolation().starts_with("cgroup v2 (") ||
              ready->ready().isolation().starts_with("process group ("))
      << ready->ready().isolation();
}

// Assigns a command task that allocates 400 MiB with a 128 MiB memory limit;
// returns its result.
std::optional<wire::TaskResult> run_memory_hog(FakeBroker& broker, const std::string& sleep) {
  auto ready = broker.receive_skipping_heartbeats();
  if (!ready || !ready->has_ready()) return std::nullopt;
  broker.send(welcome());
  wire::BrokerMessage msg;
  auto* assign = msg.mutable_assign();
  assign->mutable_ref()->set_job_id(1);
  assign->mutable_ref()->set_task(0);
  assign->mutable_ref()->set_lease(7);
  assign->set_attempt(1);
  assign->set_kind("command");
  auto* argv = assign->add_commands();
  for (const char* arg :
       {"/usr/bin/python3", "-c",
        "import time, sys; b = bytearray(400 << 20); time.sleep(float(sys.argv[1]))"}) {
    argv->add_args(arg);
  }
  argv->add_args(sleep);
  assign->set_memory_limit_bytes(128 << 20);
  broker.send(msg);
  while (auto got = broker.receive_skipping_heartbeats()) {
    if (got->has_result()) return got->result();
  }
  return std::nullopt;
}

TEST(WorkerTest, TaskPastItsMemoryLimitFailsOutOfMemoryWithItsPeak) {
  testing_support::TempDir tmp;
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));
  auto result = run_memory_hog(broker, "1000");
  ASSERT_TRUE(result);
  EXPECT_FALSE(result->succeeded());
  EXPECT_TRUE(result->out_of_memory());
  EXPECT_EQ(result->error().rfind("killed: out of memory at ", 0), 0u) << result->error();
  EXPECT_NE(result->error().find("(past its 128 MiB request)"), std::string::npos)
      << result->error();
  EXPECT_GE(result->stats().peak_rss_bytes(), uint64_t{128} << 20);
}

TEST(WorkerTest, MemoryLimitIsNotEnforcedWhenTheWorkerIsToldNotTo) {
  testing_support::TempDir tmp;
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  Worker::Options options = options_for(tmp);
  options.enforce_memory = false;
  RunningWorker running(options);
  auto result = run_memory_hog(broker, "1.5");
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->succeeded()) << result->error();
  EXPECT_FALSE(result->out_of_memory());
}

TEST(WorkerTest, RefusedWorkerLogsOnceStaysSilentAndSendsReadyAgainAfterItsBackoff) {
  testing_support::TempDir tmp;
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  common::logger("worker")->sinks().push_back(sink);
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));

  wire::BrokerMessage refused;
  refused.mutable_refused()->set_reason("worker name \"w1\" is in use by a live worker");
  std::string instance;
  // After a refusal nothing but the next Ready, a backoff (1 s, 20 beats) later:
  // no heartbeats, no renewals. One heartbeat may already be on its way when
  // the refusal arrives (sent between the Ready and the refusal), no more.
  auto after_refusal = [&]() {
    auto next = broker.receive();
    if (next && next->has_heartbeat()) next = broker.receive();
    return next;
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto ready = attempt == 0 ? broker.receive_skipping_heartbeats() : after_refusal();
    ASSERT_TRUE(ready);
    ASSERT_TRUE(ready->has_ready()) << ready->DebugString();
    if (attempt == 0) instance = ready->ready().instance();
    EXPECT_EQ(ready->ready().instance(), instance);
    broker.send(refused);
  }
  auto ready = after_refusal();
  ASSERT_TRUE(ready && ready->has_ready()) << (ready ? ready->DebugString() : "nothing");
  broker.send(welcome());
  // A session again: it beats.
  auto beat = broker.receive();
  ASSERT_TRUE(beat);
  EXPECT_TRUE(beat->has_heartbeat()) << beat->DebugString();
  running.stop();

  int lines = 0;
  for (const auto& line : sink->last_formatted()) {
    if (line.find("refused by broker: worker name \"w1\" is in use by a live worker") !=
        std::string::npos) {
      ++lines;
    }
  }
  EXPECT_EQ(lines, 1);
  auto& sinks = common::logger("worker")->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
}

TEST(WorkerTest, SavedResultIsListedInReadySentAfterWelcomeAndForgottenOnAck) {
  testing_support::TempDir tmp;
  wire::TaskResult saved;
  saved.mutable_ref()->set_job_id(4);
  saved.mutable_ref()->set_task(2);
  saved.mutable_ref()->set_lease(0x1234);
  saved.set_attempt(1);
  saved.set_succeeded(true);
  saved.set_log_tail("done\n");
  ResultStore store(tmp.file("work"));
  ASSERT_TRUE(store.save({&saved}));

  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));
  auto ready = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(ready && ready->has_ready());
  ASSERT_EQ(ready->ready().running_size(), 1);
  EXPECT_EQ(ready->ready().running(0).SerializeAsString(), saved.ref().SerializeAsString());

  broker.send(welcome());
  auto result = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(result && result->has_result());
  EXPECT_EQ(result->result().SerializeAsString(), saved.SerializeAsString());

  wire::BrokerMessage ack;
  *ack.mutable_ack()->add_tasks() = saved.ref();
  broker.send(ack);
  auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
  while (std::filesystem::exists(store.path(saved.ref())) &&
         std::chrono::steady_clock::now() < deadline) {
    // Polls the file system: the ack has no reply to wait for.
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(std::filesystem::exists(store.path(saved.ref())));
}

TEST(WorkerTest, AcknowledgedResultsDoNotWakeAnIdleWorker) {
  // A result is saved to the work dir only if still unacknowledged 0.25 s after
  // its task ended; one acknowledged before then must not wake the worker then
  // (it did, once per task: a worker between tasks woke for nothing).
  testing_support::TempDir tmp;
  FakeBroker broker("ipc://" + tmp.file("broker.ipc"));
  RunningWorker running(options_for(tmp));
  auto ready = broker.receive_skipping_heartbeats();
  ASSERT_TRUE(ready && ready->has_ready());
  wire::BrokerMessage hello;
  hello.mutable_welcome()->set_heartbeat_ms(60'000);  // no beats in the window below
  hello.mutable_welcome()->set_lease_ttl_ms(600'000);
  broker.send(hello);

  constexpr int kTasks = 20;
  for (int i = 0; i < kTasks; ++i) {
    wire::BrokerMessage assign;
    assign.mutable_assign()->mutable_ref()->set_job_id(1);
    assign.mutable_assign()->mutable_ref()->set_task(static_cast<uint64_t>(i));
    assign.mutable_assign()->mutable_ref()->set_lease(static_cast<uint64_t>(100 + i));
    assign.mutable_assign()->set_attempt(1);
    assign.mutable_assign()->set_kind("noop");
    broker.send(assign);
    auto result = broker.receive_skipping_heartbeats();
    ASSERT_TRUE(result && result->has_result()) << (result ? result->DebugString() : "none");
    wire::BrokerMessage ack;
    *ack.mutable_ack()->add_tasks() = result->result().ref();
    broker.send(ack);
    // Tasks a few milliseconds apart: each would have its own wake-up.
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(20ms);  // the last ack is read
  const long before = running.sleeps();
  ASSERT_GE(before, 0);
  // Covers 0.25 s after every task's end.
  std::this_thread::sleep_for(400ms);
  const long woke = running.sleeps() - before;
  // Idle: at most the loop's one-second cap, not one wake-up per task.
  EXPECT_LE(woke, 2) << "an idle worker woke " << woke << " times for " << kTasks
                     << " acknowledged results";
  // Nor was any of them saved.
  EXPECT_TRUE(!std::filesystem::exists(tmp.file("work/results")) ||
              std::filesystem::is_empty(tmp.file("work/results")));
}

}  // namespace
}  // namespace farmhand::worker
