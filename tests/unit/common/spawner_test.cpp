// The real spawner: what a started child has (descriptors, environment,
// working dir, limits, group, signals) and how a start failure reads.
#include "common/spawner.h"

#include <cerrno>
#include <string>
#include <utility>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::common {
namespace {

// Runs `script` with /bin/sh, stdout into a pipe; returns what it printed and
// its exit code (-1 when the start failed).
struct Ran {
  std::string out;
  int code = -1;
};

Ran run_sh(const std::string& script, SpawnSpec spec = {}) {
  int out[2];
  EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
  spec.argv = {"/bin/sh", "-c", script};
  spec.stdout_fd = StdioFd::from(out[1]);
  Result<pid_t> pid = real_spawner().spawn(spec);
  close(out[1]);
  Ran ran;
  if (!pid) {
    close(out[0]);
    ADD_FAILURE() << pid.error().reason;
    return ran;
  }
  char buffer[4096];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof buffer)) > 0) ran.out.append(buffer, n);
  close(out[0]);
  Result<int> status = real_spawner().wait(*pid);
  EXPECT_TRUE(status);
  if (status && WIFEXITED(*status)) ran.code = WEXITSTATUS(*status);
  return ran;
}

TEST(SpawnerTest, MissingProgramIsReportedBySpawnInOneLine) {
  SpawnSpec spec;
  spec.argv = {"farmhand-no-such-program", "x"};
  Result<pid_t> pid = real_spawner().spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(pid.error().reason,
            "cannot start 'farmhand-no-such-program': No such file or directory");
}

TEST(SpawnerTest, ChildWritesZeroToItsCgroupProcsBeforeItExecs) {
  // A pipe stands in for cgroup.procs: what the child writes there is what
  // the kernel would read as "move me".
  int procs[2];
  ASSERT_EQ(pipe2(procs, O_CLOEXEC), 0);
  SpawnSpec spec;
  spec.cgroup_procs_fd = procs[1];
  Ran ran = run_sh("echo ran", spec);
  close(procs[1]);
  char buffer[16] = {};
  ssize_t n = read(procs[0], buffer, sizeof buffer);
  close(procs[0]);
  EXPECT_EQ(ran.out, "ran\n");
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0), "0");
}

TEST(SpawnerTest, CgroupThatCannotBeJoinedFailsTheStartWithTheReason) {
  int read_only = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(read_only, 0);
  SpawnSpec spec;
  spec.argv = {"/bin/true"};
  spec.cgroup_procs_fd = read_only;
  Result<pid_t> pid = real_spawner().spawn(spec);
  close(read_only);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().reason,
            "cannot start '/bin/true': joining its cgroup: Bad file descriptor");
}

TEST(SpawnerTest, MissingWorkingDirIsNamedInTheError) {
  SpawnSpec spec;
  spec.argv = {"/bin/true"};
  spec.working_dir = "/nonexistent-farmhand-dir";
  Result<pid_t> pid = real_spawner().spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code, ErrorCode::kInternal);
  EXPECT_EQ(pid.error().reason,
            "cannot start '/bin/true': working dir /nonexistent-farmhand-dir: No such file or "
            "directory");
}

TEST(SpawnerTest, EnvironmentIsAddedAndWorkingDirEntered) {
  ASSERT_EQ(setenv("FARMHAND_SPAWN_KEPT", "kept", 1), 0);
  ASSERT_EQ(setenv("FARMHAND_SPAWN_REPLACED", "old", 1), 0);
  SpawnSpec spec;
  spec.env = {"FARMHAND_SPAWN_REPLACED=new", "FARMHAND_SPAWN_ADDED=added"};
  spec.working_dir = "/usr";
  Ran ran =
      run_sh("echo $FARMHAND_SPAWN_KEPT $FARMHAND_SPAWN_REPLACED $FARMHAND_SPAWN_ADDED; pwd", spec);
  unsetenv("FARMHAND_SPAWN_KEPT");
  unsetenv("FARMHAND_SPAWN_REPLACED");
  EXPECT_EQ(ran.out, "kept new added\n/usr\n");
  EXPECT_EQ(ran.code, 0);
}

TEST(SpawnerTest, UnsetNamesAreLeftOutOfTheChildsEnvironment) {
  ASSERT_EQ(setenv("FARMHAND_SPAWN_UNSET", "parent", 1), 0);
  ASSERT_EQ(setenv("FARMHAND_SPAWN_KEPT", "kept", 1), 0);
  SpawnSpec spec;
  spec.unset_env = {"FARMHAND_SPAWN_UNSET", "FARMHAND_SPAWN_NEVER_SET"};
  Ran ran = run_sh("echo ${FARMHAND_SPAWN_UNSET-gone} $FARMHAND_SPAWN_KEPT", spec);
  unsetenv("FARMHAND_SPAWN_UNSET");
  unsetenv("FARMHAND_SPAWN_KEPT");
  EXPECT_EQ(ran.out, "gone kept\n");
  EXPECT_EQ(ran.code, 0);
}

TEST(SpawnerTest, ExtraDescriptorLandsOnItsNumberAndOthersAreClosed) {
  int channel[2];
  ASSERT_EQ(pipe2(channel, O_CLOEXEC), 0);
  // A descriptor the parent forgot to mark close-on-exec.
  int leaked = fcntl(STDERR_FILENO, F_DUPFD, 20);
  ASSERT_GE(leaked, 0);
  SpawnSpec spec;
  spec.extra_fds = {{5, channel[1]}};
  Ran ran = run_sh("echo to-five >&5; if [ -e /dev/fd/" + std::to_string(leaked) +
                       " ]; then echo leaked; else echo closed; fi",
                   spec);
  close(channel[1]);
  close(leaked);
  char buffer[64] = {};
  ssize_t n = read(channel[0], buffer, sizeof buffer - 1);
  close(channel[0]);
  EXPECT_EQ(std::string(buffer, n > 0 ? n : 0), "to-five\n");
  EXPECT_EQ(ran.out, "closed\n");
}

TEST(SpawnerTest, DescriptorOnAnotherTargetNumberIsNotClobbered) {
  // The child's fd 3 comes from the parent's fd 4, and its fd 4 from the parent's fd 3:
  // moved naively, one dup2 would overwrite the other's source.
  // Whatever the test process has on 3 and 4, put back afterwards.
  int saved3 = fcntl(3, F_DUPFD_CLOEXEC, 20), saved4 = fcntl(4, F_DUPFD_CLOEXEC, 20);
  // The pipes themselves well above 3 and 4, so the dup2s below replace nothing of theirs.
  auto high = [](int fd) {
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 30);
    close(fd);
    return moved;
  };
  int a[2], b[2];
  ASSERT_EQ(pipe(a), 0);
  ASSERT_EQ(pipe(b), 0);
  for (int* fd : {&a[0], &a[1], &b[0], &b[1]}) *fd = high(*fd);
  ASSERT_GE(dup2(a[1], 3), 0);
  ASSERT_GE(dup2(b[1], 4), 0);
  SpawnSpec spec;
  spec.extra_fds = {{3, 4}, {4, 3}};
  Ran ran = run_sh("echo b >&3; echo a >&4", spec);
  for (auto [fd, saved] : {std::pair{3, saved3}, std::pair{4, saved4}}) {
    if (saved >= 0) {
      dup2(saved, fd);
      close(saved);
    } else {
      close(fd);
    }
  }
  close(a[1]);
  close(b[1]);
  char buffer[8] = {};
  EXPECT_EQ(read(a[0], buffer, sizeof buffer), 2);
  EXPECT_EQ(std::string(buffer, 2), "a\n");
  EXPECT_EQ(read(b[0], buffer, sizeof buffer), 2);
  EXPECT_EQ(std::string(buffer, 2), "b\n");
  close(a[0]);
  close(b[0]);
  EXPECT_EQ(ran.code, 0);
}

TEST(SpawnerTest, LimitsApplyFromExec) {
  SpawnSpec spec;
  spec.limits = {{RLIMIT_AS, uint64_t{512} << 20}};
  // ulimit -v reports KiB.
  EXPECT_EQ(run_sh("ulimit -v", spec).out, "524288\n");
}

TEST(SpawnerTest, ChildStartsWithNoBlockedOrIgnoredSignals) {
  sigset_t block, previous;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &block, &previous), 0);
  auto previous_pipe = signal(SIGPIPE, SIG_IGN);
  Ran ran = run_sh("grep -E '^Sig(Blk|Ign)' /proc/self/status");
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  signal(SIGPIPE, previous_pipe);
  EXPECT_NE(ran.out.find("SigBlk:\t0000000000000000\n"), std::string::npos) << ran.out;
  auto at = ran.out.find("SigIgn:\t");
  ASSERT_NE(at, std::string::npos) << ran.out;
  uint64_t ignored = std::stoull(ran.out.substr(at + 8, 16), nullptr, 16);
  // glibc's reserved signals (32 to SIGRTMIN) are whatever our own parent left.
  for (int sig = 32; sig < SIGRTMIN; ++sig) ignored &= ~(uint64_t{1} << (sig - 1));
  EXPECT_EQ(ignored & (uint64_t{1} << (SIGPIPE - 1)), 0u) << ran.out;
}

TEST(SpawnerTest, NewGroupChildLeadsItsGroupAndDiesWithIt) {
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "1000"};
  spec.new_process_group = true;
  Result<pid_t> pid = real_spawner().spawn(spec);
  ASSERT_TRUE(pid) << pid.error().reason;
  EXPECT_EQ(getpgid(*pid), *pid);
  Result<std::optional<int>> running = real_spawner().try_wait(*pid);
  ASSERT_TRUE(running);
  EXPECT_FALSE(running->has_value());

  real_spawner().signal_group(*pid, SIGKILL);
  Result<int> status = real_spawner().wait(*pid);
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGKILL);
  EXPECT_FALSE(real_spawner().try_wait(*pid));  // reaped: not ours any more
}

}  // namespace
}  // namespace farmhand::common
