#include "workers/host_resources.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace farmhand::worker {

namespace {

std::optional<std::string> first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<int64_t> to_i64(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str()) return std::nullopt;
  return static_cast<int64_t>(value);
}

// Calls `visit(dir)` for `dir` and each ancestor that is still a cgroup (has
// cgroup.procs), up to the hierarchy's root.
template <typename Visit>
void each_ancestor(std::string dir, Visit visit) {
  while (!dir.empty() && access((dir + "/cgroup.procs").c_str(), F_OK) == 0) {
    visit(dir);
    const size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    dir.resize(slash);
  }
}

uint32_t affinity_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return static_cast<uint32_t>(count);
  }
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<uint32_t>(online) : 1;
}

}  // namespace

uint32_t cores_of_quota(int64_t quota_us, int64_t period_us) {
  if (quota_us <= 0 || period_us <= 0) return 0;
  return static_cast<uint32_t>(std::max<int64_t>(1, (quota_us + period_us - 1) / period_us));
}

HostResources detect_host_resources(const TaskCgroups::Sources& sources) {
  HostResources out;
  out.cores = affinity_cores();
  out.cores_from = "affinity";
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  out.memory_bytes = pages > 0 && page_size > 0
                         ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size)
                         : 0;
  out.memory_from = "physical";

  auto cap_cores = [&out](uint32_t cores, const std::string& from) {
    if (cores > 0 && cores < out.cores) {
      out.cores = cores;
      out.cores_from = from;
    }
  };
  auto cap_memory = [&out](std::optional<int64_t> limit, const std::string& from) {
    if (limit && *limit > 0 && static_cast<uint64_t>(*limit) < out.memory_bytes) {
      out.memory_bytes = static_cast<uint64_t>(*limit);
      out.memory_from = from;
    }
  };

  if (Result<std::string> v2 = own_cgroup2_dir(sources)) {
    each_ancestor(*v2, [&](const std::string& dir) {
      if (auto line = first_line(dir + "/cpu.max")) {
        std::istringstream in(*line);
        std::string quota;
        std::string period;
        in >> quota >> period;
        cap_cores(cores_of_quota(to_i64(quota).value_or(0), to_i64(period).value_or(0)),
                  "cpu.max of " + dir);
      }
      // "max" parses as nothing: no limit.
      if (auto line = first_line(dir + "/memory.max"))
        cap_memory(to_i64(*line), "memory.max of " + dir);
    });
  }
  if (auto cpu = own_cgroup1_dir("cpu", sources)) {
    each_ancestor(*cpu, [&](const std::string& dir) {
      auto quota = first_line(dir + "/cpu.cfs_quota_us");
      auto period = first_line(dir + "/cpu.cfs_period_us");
      if (quota && period) {
        cap_cores(cores_of_quota(to_i64(*quota).value_or(0), to_i64(*period).value_or(0)),
                  "cpu.cfs_quota_us of " + dir);
      }
    });
  }
  if (auto memory = own_cgroup1_dir("memory", sources)) {
    each_ancestor(*memory, [&](const std::string& dir) {
      if (auto line = first_line(dir + "/memory.limit_in_bytes")) {
        cap_memory(to_i64(*line), "memory.limit_in_bytes of " + dir);
      }
    });
  }
  return out;
}

uint32_t detect_gpus(const std::string& dir) {
  std::error_code ec;
  uint32_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) ++count;
  }
  return count;
}

void add_host_tags(std::vector<std::string>& tags) {
  struct utsname host {};

  std::string arch = ::uname(&host) == 0 ? host.machine : "";
  if (arch == "aarch64") arch = "arm64";
  auto add = [&tags](const std::string& name, const std::string& value) {
    const std::string prefix = name + "=";
    const bool given = std::any_of(tags.begin(), tags.end(), [&](const std::string& tag) {
      return tag.rfind(prefix, 0) == 0;
    });
    if (!given && !value.empty()) tags.push_back(prefix + value);
  };
  add("os.family", "linux");
  add("cpu.arch", arch);
}

}  // namespace farmhand::worker
