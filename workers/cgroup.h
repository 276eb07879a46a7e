// Task cgroups: a cgroup v2 of its own for each command task, so that CPU and
// peak memory are counted for every process the task starts, its memory can be
// capped (memory.max), and cancel and timeout kill all of it, including a
// grandchild that left the task's process group with setsid (licence daemons,
// render wrappers).
//
// Where: the worker's own cgroup OWN is its "0::" line of /proc/self/cgroup,
// below the cgroup2 mount of /proc/self/mounts (/sys/fs/cgroup on a unified
// host, /sys/fs/cgroup/unified on a hybrid one). The worker makes
// OWN/farmhand-worker-PID and each task runs in OWN/farmhand-worker-PID/task-N:
// a subtree per worker process, so several workers may share OWN (the local
// workers of farmhandd, tests). A task's process joins its cgroup before it
// execs (SpawnSpec::cgroup_procs_fd), so nothing it starts is ever outside.
//
// The memory controller needs enabling in OWN's cgroup.subtree_control, which
// cgroup v2's "no internal processes" rule allows only when OWN holds no
// process (or is the root). Under systemd with Delegate=yes the worker is alone
// in OWN: it moves itself into OWN/worker first. When others share OWN, memory
// comes from sampling unless OWN already passes the controller down.
//
// Which features the host has decides what the runner takes from the cgroup
// (CgroupFeatures); anything missing falls back to process-group behaviour,
// and isolation() says exactly what is used. A host with no writable cgroup v2
// (a read-only /sys/fs/cgroup in a container, cgroup v1 only) gets a disabled
// TaskCgroups: enabled() is false and isolation() gives the reason.
//
// Not thread-safe; owned by the worker next to the ProcessRunner that uses it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.h"
#include "workers/task_usage.h"

namespace farmhand::worker {

struct CgroupFeatures {
  bool kill = false;         // cgroup.kill (Linux 5.14); else SIGKILL to each pid until empty
  bool memory = false;       // the memory controller: memory.max, memory.events
  bool memory_peak = false;  // memory.peak (Linux 5.19); else the peak is sampled
};

// What a task's cgroup counted, read after its processes ended.
struct CgroupUsage {
  std::optional<CpuTimes> cpu;          // cpu.stat: every process that ever ran in it
  std::optional<uint64_t> memory_peak;  // memory.peak, with the memory controller
  uint64_t oom_kills = 0;               // memory.events oom_kill
};

// One task's cgroup: its directory and an open cgroup.procs for the spawner.
// Move-only; closes its descriptor. TaskCgroups::remove deletes the directory.
class TaskCgroup {
 public:
  TaskCgroup(std::string path, int procs_fd, CgroupFeatures features);
  ~TaskCgroup();
  TaskCgroup(TaskCgroup&& other) noexcept;
  TaskCgroup& operator=(TaskCgroup&& other) noexcept;
  TaskCgroup(const TaskCgroup&) = delete;
  TaskCgroup& operator=(const TaskCgroup&) = delete;

  const std::string& path() const { return path_; }

  int procs_fd() const { return procs_fd_; }

  // SIGKILL to every process in it: cgroup.kill, or each pid of cgroup.procs
  // (a few rounds, for processes forked meanwhile) where that is missing.
  void kill() const;

  // Whether any process is still in it (cgroup.events); false when unreadable.
  bool populated() const;

  // The processes in it now (cgroup.procs).
  std::vector<pid_t> pids() const;

  CgroupUsage usage() const;

 private:
  std::string path_;
  int procs_fd_ = -1;
  CgroupFeatures features_;
};

class TaskCgroups {
 public:
  // Where probe() looks; tests point it elsewhere.
  struct Sources {
    std::string self_cgroup = "/proc/self/cgroup";
    std::string mounts = "/proc/self/mounts";
  };

  // Finds the worker's cgroup v2 and makes its subtree (moving the worker into
  // OWN/worker when that lets it enable the memory controller). Never fails: a
  // host without a usable cgroup v2 gets a disabled one with the reason.
  static std::unique_ptr<TaskCgroups> probe(const Sources& sources);

  static std::unique_ptr<TaskCgroups> probe() { return probe(Sources{}); }

  // Process groups only; `reason` says why ("turned off by --no-cgroups").
  static std::unique_ptr<TaskCgroups> disabled(std::string reason);

  // Removes what is left of the subtree (task cgroups still busy are left).
  ~TaskCgroups();
  TaskCgroups(const TaskCgroups&) = delete;
  TaskCgroups& operator=(const TaskCgroups&) = delete;

  bool enabled() const { return !subtree_.empty(); }

  const CgroupFeatures& features() const { return features_; }

  // One line for Ready.isolation, `farmhand workers` and the start-up log:
  // "cgroup v2 (kill, cpu; memory: no controller, sampled)",
  // "cgroup v2 (kill, cpu; memory: peak, memory.max)",
  // "process group (cgroup v2 not writable: /sys/fs/cgroup/x: Read-only file system)".
  // `enforce_memory` false adds that memory requests are not enforced.
  std::string isolation(bool enforce_memory) const;

  // Details for the start-up log: the subtree, and why the memory controller
  // is missing when it is; empty when disabled.
  const std::string& subtree() const { return subtree_; }

  const std::string& memory_note() const { return memory_note_; }

  // Makes the next task's cgroup. With `memory_max` > 0 and the memory
  // controller: memory.max, no swap past it (memory.swap.max 0) and
  // memory.oom.group 1 (the OOM killer takes the whole task).
  [[nodiscard]] Result<TaskCgroup> create(uint64_t memory_max);

  // Deletes a task's cgroup once its processes have ended; one still busy is
  // tried again by later calls and at destruction.
  void remove(TaskCgroup cgroup);

 private:
  TaskCgroups() = default;

  void retry_removals();

  std::string subtree_;  // empty: disabled
  std::string disabled_reason_;
  std::string memory_note_;
  CgroupFeatures features_;
  uint64_t next_task_ = 1;
  std::vector<std::string> pending_removals_;
};

// The worker's own cgroup v2 directory (mount + the "0::" path), from the
// files `sources` names; an error saying why there is none.
[[nodiscard]] Result<std::string> own_cgroup2_dir(const TaskCgroups::Sources& sources);

// The worker's own cgroup v1 directory for `controller` ("memory", "cpu") on a
// hybrid or v1 host; nullopt when there is none.
std::optional<std::string> own_cgroup1_dir(const std::string& controller,
                                           const TaskCgroups::Sources& sources);

}  // namespace farmhand::worker
