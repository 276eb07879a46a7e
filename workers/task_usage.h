// Task usage: what an attempt used (wall time, CPU, peak memory, how its
// process ended), and the Linux calls the runners measure it with.
//
// Without cgroups the kernel offers two views, and the runners use both:
//  - wait4 on every process of a task's group that this process reaps gives
//    its CPU time plus that of the descendants it waited for, and the largest
//    peak RSS among them. With the worker a child subreaper
//    (become_child_subreaper), descendants orphaned by their parent are
//    re-parented to the worker instead of init, so they are reaped, and counted,
//    too.
//  - a sample of /proc (rss_by_group) sums the RSS of a group's live members at
//    one moment: the peak of processes that run side by side, which no single
//    process's peak shows.
// A process that leaves the task's process group (setsid, setpgid) escapes
// both, as it escapes the group's kill. A cgroup per task (cpu.stat,
// memory.peak) would count everything exactly and can replace these sources
// behind TaskUsage.
//
// Free functions; rss_by_group and the /proc readers may be called from any
// thread. become_child_subreaper and reap_strays act on the calling process.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.h"

namespace farmhand::worker {

// A small file (/proc, /sys/fs/cgroup) read whole; empty when it cannot be read.
std::string read_small_file(const std::string& path);

struct TaskUsage {
  std::chrono::microseconds wall{0};
  std::chrono::microseconds cpu_user{0};
  std::chrono::microseconds cpu_system{0};
  uint64_t peak_rss_bytes = 0;   // 0: unknown
  std::optional<int> exit_code;  // the last process's exit status, when it exited
  int exit_signal = 0;           // the signal that killed it; 0: none
};

// "SIGKILL"; "signal 99" for a number with no name.
std::string signal_name(int sig);

// Makes the calling process the child subreaper of its descendants
// (PR_SET_CHILD_SUBREAPER): an orphan is re-parented to it rather than to init.
// It must then reap them (reap_strays).
[[nodiscard]] Result<void> become_child_subreaper();

// Reaps ended children of the calling process that `owned(pid, pgid)` does not
// claim (adopted orphans that left their task's group); stops at the first
// that it claims, which its owner reaps. Returns how many it reaped.
size_t reap_strays(const std::function<bool(pid_t pid, pid_t pgid)>& owned);

// The summed RSS, in bytes, of the live processes of each of `groups` now
// (from /proc/PID/stat); groups with no process are absent.
std::map<pid_t, uint64_t> rss_by_group(const std::set<pid_t>& groups);

// The summed RSS, in bytes, of the processes `pids` now (those that are gone
// count nothing).
uint64_t rss_of(const std::vector<pid_t>& pids);

// User and system CPU time of a process so far (its own threads, not its
// children), from /proc/PID/stat; nullopt when it cannot be read.
struct CpuTimes {
  std::chrono::microseconds user{0};
  std::chrono::microseconds system{0};
};

std::optional<CpuTimes> process_cpu(pid_t pid);

// The process's peak RSS (VmHWM) in bytes, since it started or since
// reset_peak_rss; nullopt when it cannot be read.
std::optional<uint64_t> process_peak_rss(pid_t pid);

// Resets the process's peak RSS to its current RSS (clear_refs "5", Linux 4.0+),
// so a reused process's peak counts from now; false when the kernel refused.
bool reset_peak_rss(pid_t pid);

}  // namespace farmhand::worker
