// ProcessRunner: runs one task's command invocations as child process groups.
//
// Each invocation is started as the leader of a new process group (setpgid),
// never through a shell, with stdin from /dev/null and stdout+stderr appended
// to the task's log file. Killing a task signals the whole group (SIGTERM,
// then SIGKILL after a grace period), so grandchildren a renderer spawned die
// too; once a leader is reaped, whatever is left of its group is SIGKILLed, so
// nothing outlives its invocation. The child asks for SIGKILL if the worker
// dies (PR_SET_PDEATHSIG). A grandchild that moves to its own session or group
// escapes all of this, unless the run has a cgroup.
//
// With TaskCgroups (workers/cgroup.h) enabled, each run also gets a cgroup v2
// of its own, which its processes join before they exec: the SIGKILLs above
// then go to the whole cgroup (cgroup.kill), so a setsid grandchild dies too,
// and a run reports only once its cgroup is empty (or kDrainTimeout passed).
// CPU time then comes from cpu.stat and the peak from memory.peak where the
// host has them; a run whose cgroup cannot be made runs as a process group and
// says so in its log.
//
// Memory limits (RunSpec::memory_limit): memory.max where the memory
// controller is available; elsewhere the RSS sampling below kills the run
// (SIGKILL, no grace) once its sampled RSS passes the limit. A run killed for
// memory, by the kernel's OOM killer or by the sampling, fails with kCrashed
// "killed: out of memory at 8.3 GiB peak (past its 8 GiB request)" and
// RunOutcome::out_of_memory.
//
// Each run's usage (workers/task_usage.h) sums what wait4 reports for every
// process of its groups that the runner reaps: the leader, and members the
// worker adopted as their child subreaper (Worker::run makes it one). After a
// leader ends and its group is SIGKILLed, the run waits up to kDrainTimeout
// for those members to be reaped before it reports, so their CPU time counts.
// At a poll() at least rss_sample_interval after the last sample it also sums
// the RSS of each group's live members from /proc: the peak of processes
// running side by side. Sampling sets no deadline of its own: the worker's loop
// polls at least every heartbeat.
//
// Children are started, signalled and reaped through a common::Spawner
// (common/spawner.h explains the real one's vfork-style start). PR_SET_PDEATHSIG
// is tied to the thread that spawned the child, not to the process: a child is
// killed when that thread exits. Use a ProcessRunner only from a thread that
// lives as long as its runs (the worker's main thread).
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
#include "common/spawner.h"
#include "workers/cgroup.h"
#include "workers/task_usage.h"

namespace farmhand::worker {

using SteadyTime = std::chrono::steady_clock::time_point;

struct RunSpec {
  uint64_t id = 0;  // caller's key for this run (unique among live runs)
  std::vector<std::vector<std::string>> commands;  // run in order, each must exit 0
  std::map<std::string, std::string> env;          // added to the worker's environment
  std::string log_path;                            // stdout+stderr, appended
  std::chrono::seconds timeout{0};                 // whole run; 0 = none
  uint64_t memory_limit = 0;                       // bytes, enforced; 0 = none
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
  // Over every command run: CPU summed, peak the largest; the exit of the last
  // one (none when it could not be started).
  TaskUsage usage;
  // Killed by the kernel's OOM killer, or by the runner past its memory_limit.
  bool out_of_memory = false;
};

class ProcessRunner {
 public:
  // `spawner` must outlive the runner.
  // `rss_sample_interval` 0: no /proc sampling (the peak is then the largest
  // single process's, and a limit without the memory controller is not enforced).
  // `cgroups` (may be null: process groups only) must outlive the runner.
  explicit ProcessRunner(std::chrono::milliseconds kill_grace = std::chrono::seconds(2),
                         common::Spawner& spawner = common::real_spawner(),
                         std::chrono::milliseconds rss_sample_interval = std::chrono::seconds(1),
                         TaskCgroups* cgroups = nullptr);
  ~ProcessRunner();  // kills every live group (SIGKILL) and reaps

  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Starts the first invocation of a run. A start failure (exec of a missing
  // program, any spawn error) is reported by a later poll() as a failed outcome
  // with the spawner's one-line reason, not here;
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

  // Whether `pgid` is the process group of one of the runs (reap_strays).
  bool owns_group(pid_t pgid) const;

  // The pid of the run's current process-group leader (tests use it).
  std::optional<pid_t> leader_pid(uint64_t id) const;

  // The directory of the run's cgroup, when it has one (tests use it).
  std::optional<std::string> cgroup_path(uint64_t id) const;

 private:
  struct Run;

  // Starts the run's current command; a failure is stored in the run.
  void spawn(Run& run);
  // SIGTERM to the run's group now, SIGKILL at now + kill_grace_.
  void begin_kill(Run& run, Error reason, SteadyTime now);
  // Reaps and advances one run; returns its outcome once it has finished.
  std::optional<RunOutcome> advance(Run& run, SteadyTime now);
  // Reaps every ended child of the run's group into its usage; true once no
  // child of ours is left in the group.
  bool collect(Run& run);
  // Adds the summed RSS of each run's group (or cgroup) now to its peak, and
  // kills a run past its memory limit that no memory controller enforces.
  void sample(SteadyTime now);
  // SIGKILL to the run's group and to its cgroup.
  void kill_all(Run& run);
  // Whether the run still needs sampling: a peak or a limit the cgroup lacks.
  bool sampled(const Run& run) const;
  // The failed outcome's error, changed to the out-of-memory reason when the
  // run died of memory; sets out_of_memory.
  std::optional<Error> classify(Run& run, std::optional<Error> error, bool& out_of_memory);

  std::map<uint64_t, std::unique_ptr<Run>> runs_;
  std::chrono::milliseconds kill_grace_;
  common::Spawner& spawner_;
  std::chrono::milliseconds rss_sample_interval_;
  TaskCgroups* cgroups_;
  SteadyTime next_sample_{};
};

// The last `max_bytes` of a file, cut to start at a line boundary when possible.
std::string read_log_tail(const std::string& path, size_t max_bytes);

}  // namespace farmhand::worker
