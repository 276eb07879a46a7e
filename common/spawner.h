// Spawner: the one way farmhand starts, signals and reaps child processes (the
// supervisor's local workers, the worker's command tasks and its farmhand-media
// children), after LevelDB's Env: callers hold a Spawner&, production passes
// real_spawner(), tests pass a fake (tests/support/fake_spawner.h) that starts
// nothing.
//
// What every child gets, whatever its spec: all signal dispositions reset to
// default and an empty signal mask (the broker and the worker block signals for
// their signalfd and ignore SIGPIPE; exec would keep both), and every
// descriptor above those the spec names closed at exec (close_range with
// CLOSE_RANGE_CLOEXEC; on kernels before 5.11 it is skipped).
//
// How the real one starts a child, and why: fork() of a worker (~10 MB, with
// ZeroMQ I/O threads) copied its page tables for every task and then took
// copy-on-write faults; that was about half the worker's CPU on short tasks.
// So the child is cloned with CLONE_VM | CLONE_VFORK on a stack of its own, as
// glibc's posix_spawn does: it shares the parent's memory and the spawning
// thread sleeps until it has exec'd or exited. posix_spawn itself cannot be
// used, since it has no way to set PR_SET_PDEATHSIG. Everything the child needs
// (argv, envp, the PATH candidates, the descriptor moves) is prepared
// beforehand; the child only makes system calls. An exec failure comes back
// through a close-on-exec pipe, so spawn() reports it as its error.
//
// PR_SET_PDEATHSIG is tied to the thread that spawned the child, not to the
// process: the child gets the signal when that thread exits. Spawn children
// with a parent-death signal only from a thread that outlives them (the
// event loop's).
//
// Thread-safety: real_spawner() may be used from any thread (spawns are
// serialised: they share one child stack). Fakes are single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "common/result.h"

namespace farmhand::common {

// One of the child's standard descriptors (0, 1, 2).
struct StdioFd {
  enum class Kind { kInherit, kNull, kFd };
  Kind kind = Kind::kInherit;
  int fd = -1;  // for kFd: the parent's descriptor, dup'ed onto the child's

  static StdioFd inherit() { return {}; }

  static StdioFd null() { return {Kind::kNull, -1}; }  // /dev/null, read-write

  static StdioFd from(int parent_fd) { return {Kind::kFd, parent_fd}; }
};

struct ResourceLimit {
  int resource = 0;    // RLIMIT_AS, ...
  uint64_t value = 0;  // soft and hard limit
};

struct SpawnSpec {
  // argv[0] is the program: run as given when it contains a '/', else searched
  // in the parent's PATH as execvp does (a file without #! runs with /bin/sh).
  std::vector<std::string> argv;
  // "NAME=value" entries added to the parent's environment, replacing same-named ones.
  std::vector<std::string> env;
  // Names of the parent's environment variables the child does not get (an
  // OpenJD environment's openjd_unset_env); a name also given in `env` is set.
  std::vector<std::string> unset_env;
  std::string working_dir;  // empty: the parent's
  StdioFd stdin_fd;
  StdioFd stdout_fd;
  StdioFd stderr_fd;
  // More descriptors for the child: {child's number (> 2), parent's descriptor}.
  std::vector<std::pair<int, int>> extra_fds;
  bool new_process_group = false;  // the child leads a group of its own (pgid = pid)
  int parent_death_signal = 0;     // sent to the child when the spawning thread dies; 0: none
  std::vector<ResourceLimit> limits;
  // An open (write) descriptor of a cgroup v2's cgroup.procs, or -1: the child
  // writes "0" to it first thing, so it runs in that cgroup before it execs and
  // everything it starts is born there (nothing can leave before the move).
  int cgroup_procs_fd = -1;
};

// What wait4 reports of a reaped child: its CPU time plus that of the
// descendants it waited for, and the largest peak RSS among them (Linux counts
// the spawner's own RSS at the clone in the child's peak, which shares the
// spawner's memory until it execs: about 10 MB for a worker).
struct ChildUsage {
  std::chrono::microseconds user{0};
  std::chrono::microseconds system{0};
  uint64_t max_rss_bytes = 0;
};

struct Reaped {
  pid_t pid = 0;
  int status = 0;  // as from waitpid
  ChildUsage usage;
};

class Spawner {
 public:
  virtual ~Spawner() = default;

  // Starts a child; it has exec'd when this returns. Errors, one line:
  // "cannot start 'render': No such file or directory" (kNotFound when the
  // program does not exist, kInternal for any other exec or set-up failure,
  // kInvalidArgument for a bad spec).
  [[nodiscard]] virtual Result<pid_t> spawn(const SpawnSpec& spec) = 0;

  // Reaps `pid` if it has ended: its wait status (as from waitpid), or nullopt
  // while it runs. An error when it is not our child (someone reaped it).
  [[nodiscard]] virtual Result<std::optional<int>> try_wait(pid_t pid) = 0;

  // try_wait() with the child's resource use.
  [[nodiscard]] virtual Result<std::optional<Reaped>> try_reap(pid_t pid) = 0;

  // Reaps one ended child of ours in the process group `group`: its leader, or
  // a member this process adopted as their child subreaper (PR_SET_CHILD_SUBREAPER).
  // nullopt while none of them has ended; kNotFound when no child of ours is
  // left in the group.
  [[nodiscard]] virtual Result<std::optional<Reaped>> try_reap_group(pid_t group) = 0;

  // Blocks until `pid` ends and reaps it: its wait status.
  [[nodiscard]] virtual Result<int> wait(pid_t pid) = 0;

  // Sends `sig` to the process `pid`.
  virtual void signal(pid_t pid, int sig) = 0;

  // Sends `sig` to every process of the group led by `leader`.
  virtual void signal_group(pid_t leader, int sig) = 0;
};

// The process-wide real spawner.
Spawner& real_spawner();

}  // namespace farmhand::common
