// ProcessRunner: runs one task's command invocations as child process groups.
//
// Each invocation is started as the leader of a new process group (setpgid),
// never through a shell, with stdin from /dev/null and stdout+stderr appended
// to the task's log file. Killing a task signals the whole group (SIGTERM,
// then SIGKILL after a grace period), so grandchildren a renderer spawned die
// too; once a leader is reaped, whatever is left of its group is SIGKILLed, so
// nothing outlives its invocation. The child asks for SIGKILL if the worker
// dies (PR_SET_PDEATHSIG). A grandchild that moves to its own session or group
// escapes all of this (that needs cgroups).
//
// How a child is started, and why: fork() of the worker (~10 MB, with ZeroMQ
// I/O threads) copied its page tables for every task and then took
// copy-on-write faults; that was about half the worker's CPU on short tasks.
// So the child is cloned with CLONE_VM | CLONE_VFORK on a stack of its own, as
// glibc's posix_spawn does: it shares the worker's memory and the spawning
// thread sleeps until it has exec'd or exited. posix_spawn itself cannot be
// used, since it has no way to set PR_SET_PDEATHSIG. Sharing memory means the
// child may only make system calls that write nothing the worker owns (errno
// aside), so everything it needs (argv, envp, the PATH candidates to exec, the
// file descriptors) is prepared beforehand. All signals stay blocked from
// before the clone until the child has reset every disposition to default, so
// no worker handler can run on the child's stack; then it unblocks all
// signals, since exec keeps both the mask and ignored dispositions and the
// worker blocks SIGCHLD/SIGTERM and ignores SIGPIPE.
//
// PR_SET_PDEATHSIG is tied to the thread that spawned the child, not to the
// process: a child is killed when that thread exits. Use a ProcessRunner only
// from a thread that lives as long as its runs (the worker's main thread).
//
// Non-blocking and single-threaded: the worker's event loop calls poll() when
// a SIGCHLD arrives or a deadline passes; poll() reaps children with
// waitpid(WNOHANG), starts the next invocation and reports finished runs.
// Not thread-safe; owned by the worker loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.h"

namespace farmhand::worker {

using SteadyTime = std::chrono::steady_clock::time_point;

struct RunSpec {
  uint64_t id = 0;  // caller's key for this run (unique among live runs)
  std::vector<std::vector<std::string>> commands;  // run in order, each must exit 0
  std::map<std::string, std::string> env;          // added to the worker's environment
  std::string log_path;                            // stdout+stderr, appended
  std::chrono::seconds timeout{0};                 // whole run; 0 = none
};

struct RunOutcome {
  uint64_t id = 0;
  bool succeeded = false;
  // Failure reason, one line: "exit code 3 from /bin/false",
  // "killed by signal SIGSEGV running render", "timed out after 10 s",
  // "cannot start 'nosuch': No such file or directory", "cancelled".
  // Codes: kInternal for a non-zero exit or a failed clone/exec (kNotFound when
  // the program does not exist), kCrashed for death by signal, kTimeout, kCancelled.
  std::optional<Error> error;
  std::chrono::milliseconds elapsed{0};
};

class ProcessRunner {
 public:
  explicit ProcessRunner(std::chrono::milliseconds kill_grace = std::chrono::seconds(2));
  ~ProcessRunner();  // kills every live group (SIGKILL) and reaps

  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Starts the first invocation of a run. A start failure (exec of a missing
  // program) is reported by a later poll() as a failed outcome, not here;
  // errors here are for bad specs (empty commands, duplicate id, log file unopenable).
  [[nodiscard]] Result<void> start(RunSpec spec, SteadyTime now);

  // Kills the run's process group; its outcome (error kCancelled, "cancelled")
  // is reported by poll() once the group leader is reaped.
  void cancel(uint64_t id, SteadyTime now);

  // Reaps children, enforces timeouts and kill grace periods, starts next
  // invocations. Returns runs that finished since the last call.
  std::vector<RunOutcome> poll(SteadyTime now);

  // The earliest time poll() must be called even without SIGCHLD (a timeout or
  // a SIGKILL escalation), if any.
  std::optional<SteadyTime> next_deadline() const;

  size_t running() const;

  // The pid of the run's current process-group leader (tests use it).
  std::optional<pid_t> leader_pid(uint64_t id) const;

 private:
  struct Run;

  // Starts the run's current command; a failure is stored in the run.
  void spawn(Run& run);
  // Opens /dev/null and maps the child stack on first use; false with errno set
  // when either fails.
  bool prepare_spawning();
  // SIGTERM to the run's group now, SIGKILL at now + kill_grace_.
  void begin_kill(Run& run, Error reason, SteadyTime now);
  // Reaps and advances one run; returns its outcome once it has finished.
  std::optional<RunOutcome> advance(Run& run, SteadyTime now);

  std::map<uint64_t, std::unique_ptr<Run>> runs_;
  std::chrono::milliseconds kill_grace_;
  // Kept for the whole runner rather than set up per child: the child's stdin,
  // and the stack it runs on until exec (reused, as only one child at a time
  // runs on it: the spawning thread waits until it has exec'd or exited).
  int null_fd_ = -1;
  void* child_stack_ = nullptr;  // mapping of kChildStackBytes, lowest page a guard
};

// The last `max_bytes` of a file, cut to start at a line boundary when possible.
std::string read_log_tail(const std::string& path, size_t max_bytes);

}  // namespace farmhand::worker
