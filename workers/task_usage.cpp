#include "workers/task_usage.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::worker {

namespace {

// The fields of /proc/PID/stat after the command name (which may hold spaces
// and parentheses), so fields()[0] is field 3 (state) of proc(5).
std::vector<std::string_view> stat_fields(std::string_view stat) {
  std::vector<std::string_view> fields;
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string_view::npos) return fields;
  stat.remove_prefix(close_paren + 1);
  while (!stat.empty()) {
    size_t start = stat.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    stat.remove_prefix(start);
    size_t end = stat.find(' ');
    fields.push_back(stat.substr(0, end));
    if (end == std::string_view::npos) break;
    stat.remove_prefix(end);
  }
  return fields;
}

// Field numbers of proc(5), as indexes into stat_fields().
constexpr size_t kPgrp = 5 - 3;
constexpr size_t kUtime = 14 - 3;
constexpr size_t kStime = 15 - 3;
constexpr size_t kRss = 24 - 3;

uint64_t to_u64(std::string_view text) {
  return std::strtoull(std::string(text).c_str(), nullptr, 10);
}

std::string stat_path(pid_t pid, const char* file) {
  return "/proc/" + std::to_string(pid) + "/" + file;
}

}  // namespace

std::string read_small_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev == nullptr) return "signal " + std::to_string(sig);
  return std::string("SIG") + abbrev;
}

Result<void> become_child_subreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return fail(ErrorCode::kInternal,
                std::string("cannot become a child subreaper: ") + std::strerror(errno));
  }
  return {};
}

size_t reap_strays(const std::function<bool(pid_t pid, pid_t pgid)>& owned) {
  size_t reaped = 0;
  // Bounded: a fork bomb's orphans wait for the next call rather than stall the loop.
  for (int n = 0; n < 1000; ++n) {
    siginfo_t info{};
    // WNOWAIT: look first; a child someone owns must stay for its owner to reap.
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid <= 0) break;
    const pid_t pid = info.si_pid;
    if (owned(pid, getpgid(pid))) break;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) != pid) break;
    ++reaped;
  }
  return reaped;
}

std::map<pid_t, uint64_t> rss_by_group(const std::set<pid_t>& groups) {
  std::map<pid_t, uint64_t> out;
  if (groups.empty()) return out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    const std::string stat = read_small_file("/proc/" + std::string(entry->d_name) + "/stat");
    const auto fields = stat_fields(stat);
    if (fields.size() <= kRss) continue;
    const auto pgrp = static_cast<pid_t>(to_u64(fields[kPgrp]));
    if (groups.count(pgrp) == 0) continue;
    out[pgrp] += to_u64(fields[kRss]) * page;
  }
  closedir(proc);
  return out;
}

uint64_t rss_of(const std::vector<pid_t>& pids) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t total = 0;
  for (pid_t pid : pids) {
    const auto fields = stat_fields(read_small_file(stat_path(pid, "stat")));
    if (fields.size() > kRss) total += to_u64(fields[kRss]) * page;
  }
  return total;
}

std::optional<CpuTimes> process_cpu(pid_t pid) {
  const std::string stat = read_small_file(stat_path(pid, "stat"));
  const auto fields = stat_fields(stat);
  if (fields.size() <= kStime) return std::nullopt;
  const auto ticks = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  auto micros = [ticks](std::string_view field) {
    return std::chrono::microseconds(to_u64(field) * 1'000'000 / ticks);
  };
  return CpuTimes{micros(fields[kUtime]), micros(fields[kStime])};
}

std::optional<uint64_t> process_peak_rss(pid_t pid) {
  const std::string status = read_small_file(stat_path(pid, "status"));
  constexpr std::string_view kField = "\nVmHWM:";
  size_t at = status.find(kField);
  if (at == std::string::npos) return std::nullopt;
  // "VmHWM:\t  123456 kB": strtoull skips the blanks and stops at the unit.
  return to_u64(std::string_view(status).substr(at + kField.size(), 32)) * 1024;
}

bool reset_peak_rss(pid_t pid) {
  int fd = open(stat_path(pid, "clear_refs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, "5", 1) == 1;
  close(fd);
  return ok;
}

}  // namespace farmhand::worker
