// MediaRunner against stand-in media processes: what the worker makes of a
// media process that aborts, hangs or answers, without needing a real decoder
// to misbehave on cue.
#include "workers/media_runner.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "media.pb.h"
#include "tests/support/fake_spawner.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::worker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class MediaRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fh-media-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  // A stand-in farmhand-media: /usr/bin/python3 running `body` with the request
  // already read from fd 3 (`request_id` holds its id).
  std::string fake(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/" + name;
    std::ofstream out(path);
    out << "#!/usr/bin/python3\n"
           "import os, signal, struct, sys, time\n"
           "def varint(n):\n"
           "    b = b''\n"
           "    while True:\n"
           "        x = n & 0x7f; n >>= 7\n"
           "        b += bytes([x | (0x80 if n else 0)])\n"
           "        if not n: return b\n"
           "def send(payload): os.write(3, struct.pack('<I', len(payload)) + payload)\n"
           "size = struct.unpack('<I', os.read(3, 4))[0]\n"
           "data = os.read(3, size)\n"
           "request_id, shift, i = 0, 0, 1\n"
           "while True:\n"
           "    request_id |= (data[i] & 0x7f) << shift; shift += 7\n"
           "    if not data[i] & 0x80: break\n"
           "    i += 1\n"
           "def reading(path):\n"
           "    p = path.encode()\n"
           "    send(b'\\x08' + varint(request_id) + b'\\x52' + varint(len(p)) + p)\n"
        << body << "\n";
    out.close();
    chmod(path.c_str(), 0755);
    return path;
  }

  static std::string thumbnail_request() {
    media::Request request;
    request.mutable_thumbnail()->set_input("/data/sh010.1012.exr");
    request.mutable_thumbnail()->set_output("/tmp/x.jpg");
    return request.SerializeAsString();
  }

  static std::optional<MediaOutcome> wait_for(MediaRunner& runner, uint64_t id) {
    auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline) {
      for (auto& outcome : runner.poll(Clock::now())) {
        if (outcome.id == id) return outcome;
      }
      std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }

  std::string dir_;
};

TEST_F(MediaRunnerTest, AbortingDecoderBecomesAClassifiedFailureNamingTheFile) {
  MediaRunner runner({fake("abort",
                           "reading('/data/sh010.1012.exr')\n"
                           "time.sleep(0.05)\n"
                           "os.kill(os.getpid(), signal.SIGABRT)"),
                      1024, 0});
  ASSERT_TRUE(runner.start(7, thumbnail_request(), 0s, Clock::now()).has_value());
  auto outcome = wait_for(runner, 7);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->succeeded);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kCrashed);
  EXPECT_EQ(outcome->error->reason, "decoder crashed (SIGABRT) reading sh010.1012.exr");
  EXPECT_EQ(runner.running(), 0u);
  EXPECT_EQ(outcome->usage.exit_signal, SIGABRT);
  EXPECT_FALSE(outcome->usage.exit_code);
}

TEST_F(MediaRunnerTest, HungDecoderIsKilledAtTheTimeout) {
  MediaRunner runner({fake("hang", "reading('/data/a.exr')\ntime.sleep(1000)"), 1024, 0});
  ASSERT_TRUE(runner.start(3, thumbnail_request(), 1s, Clock::now()).has_value());
  auto outcome = wait_for(runner, 3);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kTimeout);
  EXPECT_EQ(outcome->error->reason, "timed out after 1 s");
}

TEST_F(MediaRunnerTest, CancelKillsTheMediaProcess) {
  MediaRunner runner({fake("slow", "time.sleep(1000)"), 1024, 0});
  ASSERT_TRUE(runner.start(4, thumbnail_request(), 0s, Clock::now()).has_value());
  runner.cancel(4);
  auto outcome = wait_for(runner, 4);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "cancelled");
}

// The fake's tail: answers every further request with done(ok), until stdin closes.
const std::string kAnswerEveryRequest =
    "while True:\n"
    "    head = os.read(3, 4)\n"
    "    if not head: sys.exit(0)\n"
    "    data = os.read(3, struct.unpack('<I', head)[0])\n"
    "    rid, shift, i = 0, 0, 1\n"
    "    while True:\n"
    "        rid |= (data[i] & 0x7f) << shift; shift += 7\n"
    "        if not data[i] & 0x80: break\n"
    "        i += 1\n"
    "    done(rid)";

TEST_F(MediaRunnerTest, AnswerIsReportedAndTheProcessIsReused) {
  // Answers every request with done{ok}, forever: one process serves both tasks.
  std::string body =
      "def done(rid): send(b'\\x08' + varint(rid) + b'\\x62\\x02\\x08\\x01')\n"
      "done(request_id)\n" +
      kAnswerEveryRequest;
  MediaRunner runner({fake("ok", body), 1024, 0});
  ASSERT_TRUE(runner.start(1, thumbnail_request(), 0s, Clock::now()).has_value());
  auto first = wait_for(runner, 1);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->succeeded) << (first->error ? first->error->reason : "");
  auto fds = runner.fds();
  ASSERT_EQ(fds.size(), 1u);
  ASSERT_TRUE(runner.start(2, thumbnail_request(), 0s, Clock::now()).has_value());
  auto second = wait_for(runner, 2);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->succeeded);
  EXPECT_EQ(runner.fds(), fds);  // the same warm process
}

TEST_F(MediaRunnerTest, EachTaskOfAWarmProcessCountsOnlyItsOwnCpuAndPeak) {
  // The first task touches 64 MiB and burns 0.3 s of CPU, then frees it; the
  // second does nothing in the same process.
  std::string body =
      "def done(rid): send(b'\\x08' + varint(rid) + b'\\x62\\x02\\x08\\x01')\n"
      "n = 64 << 20\n"
      "x = bytearray(n)\n"
      "for i in range(0, n, 4096): x[i] = 1\n"
      "while time.process_time() < 0.3: pass\n"
      "del x\n"
      "done(request_id)\n" +
      kAnswerEveryRequest;
  MediaRunner runner({fake("burn", body), 1024, 0});
  ASSERT_TRUE(runner.start(1, thumbnail_request(), 0s, Clock::now()).has_value());
  auto first = wait_for(runner, 1);
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->succeeded) << (first->error ? first->error->reason : "");
  const auto first_cpu = first->usage.cpu_user + first->usage.cpu_system;
  EXPECT_GE(first_cpu, 200ms);
  EXPECT_GE(first->usage.peak_rss_bytes, uint64_t{64} << 20);
  // It ended in a live process: no exit status.
  EXPECT_FALSE(first->usage.exit_code);
  EXPECT_EQ(first->usage.exit_signal, 0);

  ASSERT_TRUE(runner.start(2, thumbnail_request(), 0s, Clock::now()).has_value());
  auto second = wait_for(runner, 2);
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->succeeded);
  EXPECT_LT(second->usage.cpu_user + second->usage.cpu_system, first_cpu / 2);
  EXPECT_GT(second->usage.peak_rss_bytes, 0u);
  EXPECT_LT(second->usage.peak_rss_bytes, uint64_t{64} << 20) << "the first task's peak counted";
}

TEST_F(MediaRunnerTest, MissingMediaBinaryFailsTheTaskNotTheWorker) {
  MediaRunner runner({dir_ + "/no-such-binary", 1024, 0});
  auto started = runner.start(9, thumbnail_request(), 0s, Clock::now());
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(started.error().reason,
            "cannot start '" + dir_ + "/no-such-binary': No such file or directory");
  EXPECT_EQ(runner.running(), 0u);
  EXPECT_TRUE(runner.fds().empty());
}

TEST_F(MediaRunnerTest, MediaProcessRunsUnderTheAddressSpaceCapFromExec) {
  // Answers done{ok} only when the cap is already in force as it starts.
  MediaRunner runner({fake("capped",
                           "import resource\n"
                           "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
                           "if soft != hard or soft != 1024 << 20: sys.exit(3)\n"
                           "send(b'\\x08' + varint(request_id) + b'\\x62\\x02\\x08\\x01')\n"
                           "time.sleep(1000)"),
                      1024, 0});
  ASSERT_TRUE(runner.start(5, thumbnail_request(), 0s, Clock::now()).has_value());
  auto outcome = wait_for(runner, 5);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded) << (outcome->error ? outcome->error->reason : "");
}

TEST_F(MediaRunnerTest, SpawnFailureFailsTheStartWithTheSpawnersLine) {
  farmhand::testing::FakeSpawner spawner;
  spawner.fail_next(Error{ErrorCode::kInternal,
                          "cannot start '/usr/bin/farmhand-media': Cannot allocate memory"});
  MediaRunner runner({"/usr/bin/farmhand-media", 2048, 0}, spawner);
  auto started = runner.start(1, thumbnail_request(), 0s, Clock::now());
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().reason,
            "cannot start '/usr/bin/farmhand-media': Cannot allocate memory");
  EXPECT_EQ(runner.running(), 0u);

  ASSERT_EQ(spawner.specs().size(), 1u);
  const common::SpawnSpec& spec = spawner.specs()[0];
  EXPECT_EQ(spec.argv,
            (std::vector<std::string>{"/usr/bin/farmhand-media", "--memory-mb", "2048", "serve"}));
  ASSERT_EQ(spec.extra_fds.size(), 1u);
  EXPECT_EQ(spec.extra_fds[0].first, 3);  // the request socket
  ASSERT_EQ(spec.limits.size(), 1u);
  EXPECT_EQ(spec.limits[0].resource, RLIMIT_AS);
  EXPECT_EQ(spec.limits[0].value, uint64_t{2048} << 20);
  EXPECT_EQ(spec.parent_death_signal, SIGKILL);
}

}  // namespace
}  // namespace farmhand::worker
