#include "workers/process_runner.h"

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fake_spawner.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

namespace farmhand::worker {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

// Generous: a limit on a hung test, not a timing expectation.
constexpr auto kWaitLimit = 30s;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Polls the runner until `pred` holds; there is no event to wait on here.
template <typename Pred>
bool poll_until(ProcessRunner& runner, Pred pred) {
  auto limit = steady_clock::now() + kWaitLimit;
  while (!pred()) {
    if (steady_clock::now() > limit) return false;
    // Outcomes are dropped: callers that want one use wait_for_outcome.
    (void)runner.poll(steady_clock::now());
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::optional<RunOutcome> wait_for_outcome(ProcessRunner& runner, uint64_t id) {
  auto limit = steady_clock::now() + kWaitLimit;
  while (steady_clock::now() < limit) {
    for (RunOutcome& outcome : runner.poll(steady_clock::now())) {
      if (outcome.id == id) return outcome;
    }
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

// Gone, or a zombie: in a container an orphan's reaper may never collect it.
bool process_dead(pid_t pid) {
  if (kill(pid, 0) == -1 && errno == ESRCH) return true;
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  // The state follows the parenthesised command name: "1234 (sleep) Z ...".
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool wait_dead(pid_t pid) {
  auto limit = steady_clock::now() + kWaitLimit;
  while (!process_dead(pid)) {
    if (steady_clock::now() > limit) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class ProcessRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "process_runner_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    log_ = dir_ + "/task.log";
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  RunSpec spec(uint64_t id, std::vector<std::vector<std::string>> commands) const {
    RunSpec s;
    s.id = id;
    s.commands = std::move(commands);
    s.log_path = log_;
    return s;
  }

  static std::vector<std::string> sh(const std::string& script) {
    return {"/bin/sh", "-c", script};
  }

  std::string dir_;
  std::string log_;
};

TEST_F(ProcessRunnerTest, TrueSucceeds) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/true"}}), steady_clock::now()));
  EXPECT_EQ(runner.running(), 1u);

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  EXPECT_FALSE(outcome->error);
  EXPECT_EQ(runner.running(), 0u);
}

TEST_F(ProcessRunnerTest, FalseFailsWithItsExitCode) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/false"}}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->succeeded);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kInternal);
  EXPECT_EQ(outcome->error->reason, "exit code 1 from /bin/false");
  EXPECT_NE(read_file(log_).find("farmhand: exit code 1 from /bin/false\n"), std::string::npos);
}

TEST_F(ProcessRunnerTest, MissingProgramFailsAsCannotStart) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"farmhand-no-such-program", "x"}}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->succeeded);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kNotFound);
  EXPECT_EQ(outcome->error->reason,
            "cannot start 'farmhand-no-such-program': No such file or directory");
}

TEST_F(ProcessRunnerTest, RealExitCode127IsNotMistakenForCannotStart) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {sh("exit 127")}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "exit code 127 from /bin/sh");
}

TEST_F(ProcessRunnerTest, CommandsRunInOrderAndStopAtFirstFailure) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {sh("echo one"), sh("echo two; exit 3"), sh("echo three")}),
                           steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "exit code 3 from /bin/sh");
  EXPECT_EQ(read_file(log_),
            "farmhand: running /bin/sh -c 'echo one'\n"
            "one\n"
            "farmhand: running /bin/sh -c 'echo two; exit 3'\n"
            "two\n"
            "farmhand: exit code 3 from /bin/sh\n");
}

TEST_F(ProcessRunnerTest, RunSucceedsWhenEveryCommandExitsZero) {
  ProcessRunner runner;
  ASSERT_TRUE(
      runner.start(spec(1, {{"/bin/echo", "frame", "7"}, {"/bin/true"}}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  EXPECT_EQ(read_file(log_),
            "farmhand: running /bin/echo frame 7\n"
            "frame 7\n"
            "farmhand: running /bin/true\n");
}

TEST_F(ProcessRunnerTest, StdoutAndStderrBothLandInTheLog) {
  ProcessRunner runner;
  ASSERT_TRUE(
      runner.start(spec(1, {sh("echo to-stdout; echo to-stderr >&2")}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  std::string log = read_file(log_);
  EXPECT_NE(log.find("to-stdout\n"), std::string::npos);
  EXPECT_NE(log.find("to-stderr\n"), std::string::npos);
}

TEST_F(ProcessRunnerTest, LogIsAppendedNotTruncated) {
  std::ofstream(log_) << "earlier attempt\n";
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/echo", "again"}}), steady_clock::now()));

  ASSERT_TRUE(wait_for_outcome(runner, 1));
  EXPECT_EQ(read_file(log_), "earlier attempt\nfarmhand: running /bin/echo again\nagain\n");
}

TEST_F(ProcessRunnerTest, StdinIsDevNull) {
  ProcessRunner runner;
  // `cat` would hang on an inherited terminal or pipe; /dev/null ends it at once.
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/cat"}}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
}

TEST_F(ProcessRunnerTest, EnvIsAddedToTheWorkersEnvironment) {
  ASSERT_EQ(setenv("FARMHAND_TEST_INHERITED", "from-worker", 1), 0);
  ASSERT_EQ(setenv("FARMHAND_TEST_REPLACED", "old", 1), 0);
  RunSpec s = spec(1, {sh("echo frame=$FARMHAND_TEST_FRAME inherited=$FARMHAND_TEST_INHERITED "
                          "replaced=$FARMHAND_TEST_REPLACED")});
  s.env = {{"FARMHAND_TEST_FRAME", "7"}, {"FARMHAND_TEST_REPLACED", "new"}};
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(std::move(s), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  unsetenv("FARMHAND_TEST_INHERITED");
  unsetenv("FARMHAND_TEST_REPLACED");
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  EXPECT_NE(read_file(log_).find("frame=7 inherited=from-worker replaced=new\n"),
            std::string::npos);
}

TEST_F(ProcessRunnerTest, ChildStartsWithNoBlockedOrIgnoredSignals) {
  // The worker blocks SIGTERM for its signalfd and ignores SIGPIPE; a task must
  // not inherit either, or it could not be stopped politely.
  sigset_t block, previous;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &block, &previous), 0);
  auto previous_pipe = signal(SIGPIPE, SIG_IGN);

  ProcessRunner runner;
  // SigBlk and SigIgn are hex masks; all zero means nothing blocked or ignored.
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}}),
                           steady_clock::now()));
  auto outcome = wait_for_outcome(runner, 1);
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  signal(SIGPIPE, previous_pipe);

  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  std::string log = read_file(log_);
  EXPECT_NE(log.find("SigBlk:\t0000000000000000\n"), std::string::npos) << log;
  auto at = log.find("SigIgn:\t");
  ASSERT_NE(at, std::string::npos) << log;
  uint64_t ignored = std::stoull(log.substr(at + 8, 16), nullptr, 16);
  // glibc reserves the signals between 32 and SIGRTMIN for itself and refuses to
  // change them, so whatever our own parent left there is inherited; the rest must be clear.
  for (int sig = 32; sig < SIGRTMIN; ++sig) ignored &= ~(uint64_t{1} << (sig - 1));
  EXPECT_EQ(ignored, 0u) << log;
}

TEST_F(ProcessRunnerTest, TimeoutKillsTheWholeProcessGroup) {
  std::string pid_file = dir_ + "/grandchild.pid";
  RunSpec s = spec(1, {sh("sleep 1000 & echo $! > " + pid_file + "; wait")});
  s.timeout = 1s;
  ProcessRunner runner;
  auto started = steady_clock::now();
  ASSERT_TRUE(runner.start(std::move(s), started));
  EXPECT_EQ(runner.next_deadline(), started + 1s);

  pid_t grandchild = 0;
  ASSERT_TRUE(poll_until(runner, [&] {
    std::string text = read_file(pid_file);
    if (text.empty() || text.back() != '\n') return false;
    grandchild = std::stoi(text);
    return true;
  }));
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kTimeout);
  EXPECT_EQ(outcome->error->reason, "timed out after 1 s");
  EXPECT_TRUE(wait_dead(grandchild)) << "grandchild " << grandchild << " survived";
  EXPECT_NE(read_file(log_).find("farmhand: timed out after 1 s\n"), std::string::npos);
}

TEST_F(ProcessRunnerTest, ChildIgnoringSigtermIsKilledAfterGracePeriod) {
  std::string pid_file = dir_ + "/grandchild.pid";
  ProcessRunner runner(200ms);
  // The background sleep inherits the ignored SIGTERM, as a renderer's helper might.
  ASSERT_TRUE(runner.start(
      spec(1, {sh("trap '' TERM; sleep 1000 & echo $! > " + pid_file + "; echo ready; wait")}),
      steady_clock::now()));
  // Cancel only once the trap is in place, or SIGTERM alone would do the job.
  ASSERT_TRUE(
      poll_until(runner, [&] { return read_file(log_).find("ready\n") != std::string::npos; }));
  pid_t grandchild = std::stoi(read_file(pid_file));
  pid_t leader = *runner.leader_pid(1);

  auto cancelled_at = steady_clock::now();
  runner.cancel(1, cancelled_at);
  EXPECT_EQ(runner.next_deadline(), cancelled_at + 200ms);

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kCancelled);
  EXPECT_TRUE(wait_dead(leader));
  EXPECT_TRUE(wait_dead(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST_F(ProcessRunnerTest, GrandchildIgnoringSigtermDiesWithItsLeader) {
  std::string pid_file = dir_ + "/grandchild.pid";
  // A grace period the test never reaches: only the kill after reaping the
  // leader can stop the grandchild.
  ProcessRunner runner(1h);
  ASSERT_TRUE(runner.start(spec(1, {sh("(trap '' TERM; exec sleep 1000) & echo $! > " + pid_file +
                                       "; echo ready; wait")}),
                           steady_clock::now()));
  ASSERT_TRUE(
      poll_until(runner, [&] { return read_file(log_).find("ready\n") != std::string::npos; }));
  pid_t grandchild = std::stoi(read_file(pid_file));

  runner.cancel(1, steady_clock::now());
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "cancelled");
  EXPECT_TRUE(wait_dead(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST_F(ProcessRunnerTest, GroupIsKilledWhenTheLeaderExits) {
  std::string pid_file = dir_ + "/grandchild.pid";
  ProcessRunner runner;
  // The leader exits 0 but leaves a straggler holding the log open.
  ASSERT_TRUE(
      runner.start(spec(1, {sh("sleep 1000 & echo $! > " + pid_file)}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->succeeded);
  pid_t grandchild = std::stoi(read_file(pid_file));
  EXPECT_TRUE(wait_dead(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST_F(ProcessRunnerTest, CancelKillsTheGroupAndReportsCancelled) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/sleep", "1000"}}), steady_clock::now()));
  pid_t leader = *runner.leader_pid(1);

  runner.cancel(1, steady_clock::now());
  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->succeeded);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kCancelled);
  EXPECT_EQ(outcome->error->reason, "cancelled");
  EXPECT_TRUE(wait_dead(leader));
  EXPECT_NE(read_file(log_).find("farmhand: cancelled\n"), std::string::npos);
}

TEST_F(ProcessRunnerTest, CancelBeforeTheNextCommandStopsTheRun) {
  ProcessRunner runner;
  ASSERT_TRUE(
      runner.start(spec(1, {{"/bin/sleep", "1000"}, {"/bin/echo", "never"}}), steady_clock::now()));
  runner.cancel(1, steady_clock::now());

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->reason, "cancelled");
  EXPECT_EQ(read_file(log_).find("never"), std::string::npos);
}

TEST_F(ProcessRunnerTest, DeathBySignalIsReportedByName) {
  ProcessRunner runner;
  // No core file: the test runs in a directory we do not own.
  ASSERT_TRUE(runner.start(spec(1, {sh("ulimit -c 0; kill -SEGV $$")}), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->code, ErrorCode::kCrashed);
  EXPECT_EQ(outcome->error->reason, "killed by signal SIGSEGV running /bin/sh");
}

// A process that burns `cpu_s` of CPU time of its own, whatever the machine's load.
std::string burn_cpu_python(double cpu_s) {
  return "import time\nwhile time.process_time() < " + std::to_string(cpu_s) +
         ": pass\nprint('burnt', flush=True)\n";
}

TEST_F(ProcessRunnerTest, UsageCountsTheCpuOfAGrandchildItsParentOrphaned) {
  // As the worker does: orphans come to this process, not init.
  ASSERT_TRUE(become_child_subreaper());
  ProcessRunner runner;
  // The burner's parent (the subshell) exits at once, so only the subreaper
  // can reap it and count its CPU; the leader waits on a fifo until it is done
  // and never reaps it.
  RunSpec s = spec(1, {sh("cd " + dir_ +
                          " && mkfifo burnt && ( /usr/bin/python3 -c \"$BURN\" > burnt & ) "
                          "&& read line < burnt && echo \"leader read $line\"")});
  s.env = {{"BURN", burn_cpu_python(0.4)}};
  ASSERT_TRUE(runner.start(std::move(s), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->succeeded) << read_file(log_);
  EXPECT_NE(read_file(log_).find("leader read burnt"), std::string::npos);
  const auto cpu = outcome->usage.cpu_user + outcome->usage.cpu_system;
  EXPECT_GE(cpu, 300ms) << "user " << outcome->usage.cpu_user.count() << " us, system "
                        << outcome->usage.cpu_system.count() << " us";
  EXPECT_GE(outcome->usage.wall, cpu / 2);  // one core at least; a sanity bound only
  ASSERT_TRUE(outcome->usage.exit_code);
  EXPECT_EQ(*outcome->usage.exit_code, 0);
  EXPECT_EQ(outcome->usage.exit_signal, 0);
}

TEST_F(ProcessRunnerTest, UsagePeakIsTheLargestProcessOfTheGroup) {
  ProcessRunner runner;
  // python3 is a grandchild (sh does not exec the last command: `; true`); it
  // touches every page of 200 MiB.
  RunSpec s = spec(1, {sh("/usr/bin/python3 -c \"$ALLOC\"; true")});
  s.env = {{"ALLOC", "n = 200 << 20\nx = bytearray(n)\nfor i in range(0, n, 4096): x[i] = 1\n"}};
  ASSERT_TRUE(runner.start(std::move(s), steady_clock::now()));

  auto outcome = wait_for_outcome(runner, 1);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(outcome->succeeded) << read_file(log_);
  EXPECT_GE(outcome->usage.peak_rss_bytes, uint64_t{200} << 20);
}

TEST_F(ProcessRunnerTest, UsageRecordsTheLastCommandsExitCodeOrSignal) {
  ProcessRunner runner;
  ASSERT_TRUE(runner.start(spec(1, {{"/bin/true"}, sh("exit 3")}), steady_clock::now()));
  auto exited = wait_for_outcome(runner, 1);
  ASSERT_TRUE(exited);
  ASSERT_TRUE(exited->usage.exit_code);
  EXPECT_EQ(*exited->usage.exit_code, 3);
  EXPECT_EQ(exited->usage.exit_signal, 0);

  ASSERT_TRUE(runner.start(spec(2, {sh("kill -KILL $$")}), steady_clock::now()));
  auto killed = wait_for_outcome(runner, 2);
  ASSERT_TRUE(killed);
  EXPECT_FALSE(killed->usage.exit_code);
  EXPECT_EQ(killed->usage.exit_signal, SIGKILL);
  EXPECT_EQ(signal_name(killed->usage.exit_signal), "SIGKILL");
  EXPECT_GT(killed->usage.wall.count(), 0);
}

TEST_F(ProcessRunnerTest, BadSpecsAreRejectedAtStart) {
  ProcessRunner runner;
  auto now = steady_clock::now();

  auto empty = runner.start(spec(1, {}), now);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);

  auto empty_argv = runner.start(spec(1, {{"/bin/true"}, {}}), now);
  ASSERT_FALSE(empty_argv);
  EXPECT_EQ(empty_argv.error().code, ErrorCode::kInvalidArgument);

  RunSpec bad_log = spec(1, {{"/bin/true"}});
  bad_log.log_path = dir_ + "/missing-dir/task.log";
  auto unopenable = runner.start(std::move(bad_log), now);
  ASSERT_FALSE(unopenable);
  EXPECT_EQ(unopenable.error().code, ErrorCode::kIo);

  ASSERT_TRUE(runner.start(spec(1, {{"/bin/sleep", "1000"}}), now));
  auto duplicate = runner.start(spec(1, {{"/bin/true"}}), now);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(runner.running(), 1u);
}

TEST_F(ProcessRunnerTest, DestructorKillsLiveRuns) {
  pid_t leader = 0;
  {
    ProcessRunner runner;
    ASSERT_TRUE(runner.start(spec(1, {{"/bin/sleep", "1000"}}), steady_clock::now()));
    leader = *runner.leader_pid(1);
  }
  // Reaped by the destructor, so the pid is gone, not a zombie.
  errno = 0;
  EXPECT_EQ(kill(leader, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(ProcessRunnerTest, SpawnFailureIsTheTaskFailureWithTheSpawnersLine) {
  farmhand::testing::FakeSpawner spawner;
  spawner.fail_next(Error{ErrorCode::kInternal,
                          "cannot start 'render': Resource temporarily "
                          "unavailable"});
  ProcessRunner runner(2s, spawner);
  const auto now = steady_clock::now();
  ASSERT_TRUE(runner.start(spec(1, {{"render", "-f", "7"}}), now));
  ASSERT_TRUE(runner.next_deadline());  // due at once: nothing to wait for

  std::vector<RunOutcome> outcomes = runner.poll(now);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_FALSE(outcomes[0].succeeded);
  ASSERT_TRUE(outcomes[0].error);
  EXPECT_EQ(outcomes[0].error->code, ErrorCode::kInternal);
  EXPECT_EQ(outcomes[0].error->reason, "cannot start 'render': Resource temporarily unavailable");
  EXPECT_NE(read_file(log_).find("farmhand: cannot start 'render': Resource temporarily "
                                 "unavailable\n"),
            std::string::npos);
  EXPECT_EQ(runner.running(), 0u);
}

TEST_F(ProcessRunnerTest, InvocationIsSpawnedAsAGroupWithItsLogAndEnvironment) {
  farmhand::testing::FakeSpawner spawner;
  ProcessRunner runner(2s, spawner);
  RunSpec s = spec(1, {{"render", "-f", "7"}, {"publish", "7"}});
  s.env = {{"FRAME", "7"}};
  const auto now = steady_clock::now();
  ASSERT_TRUE(runner.start(s, now));

  ASSERT_EQ(spawner.specs().size(), 1u);
  const common::SpawnSpec first = spawner.specs()[0];  // a copy: specs() grows
  EXPECT_EQ(first.argv, (std::vector<std::string>{"render", "-f", "7"}));
  EXPECT_EQ(first.env, std::vector<std::string>{"FRAME=7"});
  EXPECT_TRUE(first.new_process_group);
  EXPECT_EQ(first.parent_death_signal, SIGKILL);
  EXPECT_EQ(first.stdin_fd.kind, common::StdioFd::Kind::kNull);
  EXPECT_EQ(first.stdout_fd.kind, common::StdioFd::Kind::kFd);
  EXPECT_EQ(first.stderr_fd.fd, first.stdout_fd.fd);

  // The first invocation exits 0: the next one starts, with the same set-up.
  spawner.exit(spawner.pids()[0], farmhand::testing::FakeSpawner::exited(0));
  EXPECT_TRUE(runner.poll(now).empty());
  ASSERT_EQ(spawner.specs().size(), 2u);
  EXPECT_EQ(spawner.specs()[1].argv, (std::vector<std::string>{"publish", "7"}));
  EXPECT_EQ(spawner.specs()[1].env, first.env);
  spawner.exit(spawner.pids()[1], farmhand::testing::FakeSpawner::exited(0));
  std::vector<RunOutcome> outcomes = runner.poll(now);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].succeeded);
}

TEST_F(ProcessRunnerTest, TimeoutSignalsTheGroupThenEscalatesAfterTheGrace) {
  farmhand::testing::FakeSpawner spawner;
  spawner.ignore(SIGTERM);
  ProcessRunner runner(2s, spawner);
  RunSpec s = spec(1, {{"render"}});
  s.timeout = 10s;
  const auto now = steady_clock::now();
  ASSERT_TRUE(runner.start(s, now));
  const pid_t leader = spawner.pids()[0];

  EXPECT_TRUE(runner.poll(now + 9s).empty());
  EXPECT_TRUE(spawner.signals().empty());
  EXPECT_TRUE(runner.poll(now + 10s).empty());
  ASSERT_EQ(spawner.signals().size(), 1u);
  EXPECT_EQ(spawner.signals()[0], std::make_pair(-leader, SIGTERM));
  ASSERT_TRUE(runner.next_deadline());
  EXPECT_EQ(*runner.next_deadline(), now + 12s);

  EXPECT_TRUE(runner.poll(now + 12s).empty());  // SIGKILL sent; reaped at the next poll
  EXPECT_EQ(spawner.signals().back(), std::make_pair(-leader, SIGKILL));
  std::vector<RunOutcome> outcomes = runner.poll(now + 12s);
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].error);
  EXPECT_EQ(outcomes[0].error->code, ErrorCode::kTimeout);
  EXPECT_EQ(outcomes[0].error->reason, "timed out after 10 s");
}

TEST_F(ProcessRunnerTest, LogTailStartsAtALineBoundary) {
  std::ofstream(log_) << "first line\nsecond line\nthird\n";

  EXPECT_EQ(read_log_tail(log_, 10), "third\n");               // cut inside "second line"
  EXPECT_EQ(read_log_tail(log_, 18), "second line\nthird\n");  // window starts on a boundary
  EXPECT_EQ(read_log_tail(log_, 1000), "first line\nsecond line\nthird\n");
}

TEST_F(ProcessRunnerTest, LogTailWithoutNewlineKeepsTheWholeWindow) {
  std::ofstream(log_) << "abcdefgh";
  EXPECT_EQ(read_log_tail(log_, 3), "fgh");
}

TEST_F(ProcessRunnerTest, LogTailOfMissingFileIsEmpty) {
  EXPECT_EQ(read_log_tail(dir_ + "/no-such.log", 100), "");
}

}  // namespace
}  // namespace farmhand::worker
