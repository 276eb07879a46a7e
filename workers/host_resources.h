// Host resources: the cores and memory a worker reports in Ready, detected
// unless flags say otherwise.
//
// Cores: the CPUs this process may run on (sched_getaffinity), fewer when a
// CPU quota caps its cgroup or an ancestor (cpu.max; cpu.cfs_quota_us on
// cgroup v1), rounded up. Memory: physical memory, less when the cgroup or an
// ancestor has a smaller limit (memory.max; memory.limit_in_bytes on v1), as in
// a container or a systemd unit with MemoryMax=.
//
// Free functions; thread-safe (they only read /proc and /sys).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "workers/cgroup.h"

namespace farmhand::worker {

struct HostResources {
  uint32_t cores = 1;
  uint64_t memory_bytes = 0;
  // Where each came from, for the start-up log: "affinity", "cpu.max of
  // /sys/fs/cgroup/x", "physical", "memory.max of /sys/fs/cgroup/x".
  std::string cores_from;
  std::string memory_from;
};

HostResources detect_host_resources(const TaskCgroups::Sources& sources);

// ceil(quota / period) of a cpu.max line "200000 100000", or of v1's two
// numbers; 0 when there is no quota ("max", -1, malformed).
uint32_t cores_of_quota(int64_t quota_us, int64_t period_us);

// The NVIDIA GPUs the driver lists (a directory each under `dir`, by PCI
// bus id); 0 without the driver.
uint32_t detect_gpus(const std::string& dir = "/proc/driver/nvidia/gpus");

// The tags every worker has, for OpenJD host attributes: "os.family=linux"
// and "cpu.arch=" the machine's (x86_64, arm64 for aarch64), each added to
// `tags` unless a tag of that name ("cpu.arch=...") is there already.
void add_host_tags(std::vector<std::string>& tags);

}  // namespace farmhand::worker
