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

}  // namespace farmhand::worker
