#include "workers/cgroup.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string_view>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers/task_usage.h"

namespace farmhand::worker {

namespace {

constexpr std::string_view kSubtreePrefix = "farmhand-worker-";
// Rounds of SIGKILL to each pid without cgroup.kill: a process forked between
// reading cgroup.procs and the kill shows up in the next round.
constexpr int kKillRounds = 16;

// Writes `text` in one write(2), as cgroup files want; 0 or the errno.
int write_text(const std::string& path, std::string_view text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = write(fd, text.data(), text.size());
  int err = n == static_cast<ssize_t>(text.size()) ? 0 : (n < 0 ? errno : EIO);
  close(fd);
  return err;
}

bool exists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

bool has_word(std::string_view text, std::string_view word) {
  for (const std::string& w : words(text)) {
    if (w == word) return true;
  }
  return false;
}

// The value after `key ` on its own line of a flat-keyed file (cpu.stat,
// memory.events, cgroup.events).
std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return std::strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
    at = end + 1;
  }
  return std::nullopt;
}

// /proc/self/mounts escapes blanks and backslashes in paths as \ooo.
std::string unescape_mount_path(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      const std::string octal(text.substr(i + 1, 3));
      if (octal.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::strtol(octal.c_str(), nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

struct Mount {
  std::string path;
  std::string type;
  std::vector<std::string> options;
};

std::vector<Mount> read_mounts(const std::string& file) {
  std::vector<Mount> out;
  std::istringstream in(read_small_file(file));
  for (std::string line; std::getline(in, line);) {
    const std::vector<std::string> fields = words(line);
    if (fields.size() < 4) continue;
    Mount mount{unescape_mount_path(fields[1]), fields[2], {}};
    std::stringstream options(fields[3]);
    for (std::string option; std::getline(options, option, ',');) mount.options.push_back(option);
    out.push_back(std::move(mount));
  }
  return out;
}

// The path of the line of /proc/self/cgroup whose controller list matches:
// "" for the v2 line "0::/path", else a v1 controller name.
std::optional<std::string> cgroup_path(const std::string& file, const std::string& controller) {
  std::istringstream in(read_small_file(file));
  for (std::string line; std::getline(in, line);) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string id = line.substr(0, first);
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controller.empty()) {
      if (id == "0" && controllers.empty()) return path;
      continue;
    }
    std::stringstream list(controllers);
    for (std::string name; std::getline(list, name, ',');) {
      if (name == controller) return path;
    }
  }
  return std::nullopt;
}

std::string join(const std::string& dir, const std::string& path) {
  if (path.empty() || path == "/") return dir;
  return dir + (path.front() == '/' ? "" : "/") + path;
}

// The pid in "farmhand-worker-PID", or 0.
pid_t subtree_pid(std::string_view name) {
  if (name.substr(0, kSubtreePrefix.size()) != kSubtreePrefix) return 0;
  const std::string digits(name.substr(kSubtreePrefix.size()));
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::strtol(digits.c_str(), nullptr, 10));
}

std::vector<std::string> subdirectories(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* entry = readdir(d)) {
    if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;
    out.emplace_back(entry->d_name);
  }
  closedir(d);
  return out;
}

// Removes a dead worker's empty task cgroups and then its subtree. Populated
// ones are left: their processes may belong to a live worker in another pid
// namespace, which a pid check cannot tell from a dead one.
void sweep(const std::string& subtree) {
  for (const std::string& child : subdirectories(subtree)) rmdir((subtree + "/" + child).c_str());
  rmdir(subtree.c_str());
}

// Whether a fresh process can join `cgroup` (the permission to move a process
// is not the permission to mkdir). A plain fork at start-up: the child only
// writes and exits.
int try_join(const std::string& cgroup) {
  const std::string procs = cgroup + "/cgroup.procs";
  pid_t pid = fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) _exit(errno & 0xff);
    _exit(write(fd, "0", 1) == 1 ? 0 : errno & 0xff);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
}

}  // namespace

TaskCgroup::TaskCgroup(std::string path, int procs_fd, CgroupFeatures features)
    : path_(std::move(path)), procs_fd_(procs_fd), features_(features) {}

TaskCgroup::~TaskCgroup() {
  if (procs_fd_ >= 0) close(procs_fd_);
}

TaskCgroup::TaskCgroup(TaskCgroup&& other) noexcept
    : path_(std::move(other.path_)),
      procs_fd_(std::exchange(other.procs_fd_, -1)),
      features_(other.features_) {}

TaskCgroup& TaskCgroup::operator=(TaskCgroup&& other) noexcept {
  if (this != &other) {
    if (procs_fd_ >= 0) close(procs_fd_);
    path_ = std::move(other.path_);
    procs_fd_ = std::exchange(other.procs_fd_, -1);
    features_ = other.features_;
  }
  return *this;
}

void TaskCgroup::kill() const {
  if (features_.kill && write_text(path_ + "/cgroup.kill", "1") == 0) return;
  for (int round = 0; round < kKillRounds; ++round) {
    const std::vector<pid_t> live = pids();
    if (live.empty()) return;
    for (pid_t pid : live) {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  }
}

bool TaskCgroup::populated() const {
  return keyed_value(read_small_file(path_ + "/cgroup.events"), "populated").value_or(0) != 0;
}

std::vector<pid_t> TaskCgroup::pids() const {
  std::vector<pid_t> out;
  for (const std::string& word : words(read_small_file(path_ + "/cgroup.procs"))) {
    out.push_back(static_cast<pid_t>(std::strtol(word.c_str(), nullptr, 10)));
  }
  return out;
}

CgroupUsage TaskCgroup::usage() const {
  CgroupUsage usage;
  const std::string cpu = read_small_file(path_ + "/cpu.stat");
  auto user = keyed_value(cpu, "user_usec");
  auto system = keyed_value(cpu, "system_usec");
  if (user && system) {
    usage.cpu = CpuTimes{std::chrono::microseconds(*user), std::chrono::microseconds(*system)};
  }
  if (features_.memory_peak) {
    const std::string peak = read_small_file(path_ + "/memory.peak");
    if (!peak.empty()) usage.memory_peak = std::strtoull(peak.c_str(), nullptr, 10);
  }
  if (features_.memory) {
    usage.oom_kills =
        keyed_value(read_small_file(path_ + "/memory.events"), "oom_kill").value_or(0);
  }
  return usage;
}

Result<std::string> own_cgroup2_dir(const TaskCgroups::Sources& sources) {
  const std::optional<std::string> path = cgroup_path(sources.self_cgroup, "");
  if (!path) {
    return fail(ErrorCode::kUnavailable, "no cgroup v2 line in " + sources.self_cgroup);
  }
  std::optional<std::string> mount;
  for (const Mount& m : read_mounts(sources.mounts)) {
    if (m.type == "cgroup2") {
      mount = m.path;
      break;
    }
  }
  if (!mount) return fail(ErrorCode::kUnavailable, "no cgroup2 file system mounted");
  const std::string dir = join(*mount, *path);
  if (!exists(dir + "/cgroup.procs")) {
    return fail(ErrorCode::kUnavailable,
                "own cgroup " + *path + " not found under the cgroup2 mount " + *mount);
  }
  return dir;
}

std::optional<std::string> own_cgroup1_dir(const std::string& controller,
                                           const TaskCgroups::Sources& sources) {
  const std::optional<std::string> path = cgroup_path(sources.self_cgroup, controller);
  if (!path) return std::nullopt;
  for (const Mount& m : read_mounts(sources.mounts)) {
    if (m.type != "cgroup") continue;
    if (std::find(m.options.begin(), m.options.end(), controller) == m.options.end()) continue;
    const std::string dir = join(m.path, *path);
    if (exists(dir)) return dir;
  }
  return std::nullopt;
}

std::unique_ptr<TaskCgroups> TaskCgroups::disabled(std::string reason) {
  std::unique_ptr<TaskCgroups> cgroups(new TaskCgroups());
  cgroups->disabled_reason_ = std::move(reason);
  return cgroups;
}

std::unique_ptr<TaskCgroups> TaskCgroups::probe(const Sources& sources) {
  Result<std::string> own = own_cgroup2_dir(sources);
  if (!own) return disabled(own.error().reason);
  auto not_writable = [](const std::string& path, int err) {
    return disabled("cgroup v2 not writable: " + path + ": " + std::strerror(err));
  };

  // Leftovers of workers that died without cleaning up.
  for (const std::string& child : subdirectories(*own)) {
    const pid_t pid = subtree_pid(child);
    if (pid > 0 && pid != getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) {
      sweep(*own + "/" + child);
    }
  }

  std::string memory_note;
  const std::string controllers = read_small_file(*own + "/cgroup.controllers");
  if (!has_word(controllers, "memory")) {
    memory_note = "no memory controller in " + *own + "/cgroup.controllers";
  } else if (!has_word(read_small_file(*own + "/cgroup.subtree_control"), "memory")) {
    const std::string control = *own + "/cgroup.subtree_control";
    int err = write_text(control, "+memory");
    if (err == EBUSY) {
      // "No internal processes": only a cgroup without processes passes a
      // controller down. Alone in it (Delegate=yes), the worker steps into a
      // leaf of its own; with company it must not move the others.
      const std::vector<std::string> procs = words(read_small_file(*own + "/cgroup.procs"));
      if (procs.size() == 1 && procs[0] == std::to_string(getpid())) {
        const std::string leaf = *own + "/worker";
        if (mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
          err = errno;
        } else if ((err = write_text(leaf + "/cgroup.procs", "0")) == 0) {
          err = write_text(control, "+memory");
        }
      }
    }
    if (err != 0) {
      memory_note = "memory controller not enabled in " + *own + ": " + std::strerror(err);
    }
  }

  const std::string subtree = *own + "/" + std::string(kSubtreePrefix) + std::to_string(getpid());
  if (mkdir(subtree.c_str(), 0755) != 0) {
    if (errno != EEXIST) return not_writable(subtree, errno);
    sweep(subtree);  // ours from an earlier process with the same pid
    if (mkdir(subtree.c_str(), 0755) != 0 && errno != EEXIST) return not_writable(subtree, errno);
  }
  std::unique_ptr<TaskCgroups> cgroups(new TaskCgroups());
  CgroupFeatures& features = cgroups->features_;
  if (memory_note.empty()) {
    int err = write_text(subtree + "/cgroup.subtree_control", "+memory");
    if (err == 0) {
      features.memory = true;
    } else {
      memory_note = "memory controller not enabled in " + subtree + ": " + std::strerror(err);
    }
  }
  const std::string probe = subtree + "/probe";
  if (mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) {
    const int err = errno;
    rmdir(subtree.c_str());
    return not_writable(probe, err);
  }
  features.kill = exists(probe + "/cgroup.kill");
  features.memory_peak = features.memory && exists(probe + "/memory.peak");
  const int join_err = try_join(probe);
  rmdir(probe.c_str());
  if (join_err != 0) {
    rmdir(subtree.c_str());
    return disabled("cannot move a process into " + probe + ": " + std::strerror(join_err));
  }
  cgroups->subtree_ = subtree;
  cgroups->memory_note_ = std::move(memory_note);
  return cgroups;
}

TaskCgroups::~TaskCgroups() {
  if (!enabled()) return;
  retry_removals();
  sweep(subtree_);
}

std::string TaskCgroups::isolation(bool enforce_memory) const {
  if (!enabled()) {
    return "process group (" + disabled_reason_ + ")" +
           (enforce_memory ? "" : "; memory requests not enforced");
  }
  std::string memory;
  if (!features_.memory) {
    memory = "no controller, sampled";
  } else {
    memory = features_.memory_peak ? "peak" : "sampled";
    memory += enforce_memory ? ", memory.max" : "";
  }
  if (!enforce_memory) memory += ", not enforced";
  return std::string("cgroup v2 (") + (features_.kill ? "kill" : "kill by pid") +
         ", cpu; memory: " + memory + ")";
}

Result<TaskCgroup> TaskCgroups::create(uint64_t memory_max) {
  if (!enabled()) return fail(ErrorCode::kUnavailable, "no task cgroups");
  retry_removals();
  const std::string path = subtree_ + "/task-" + std::to_string(next_task_++);
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return fail(ErrorCode::kIo, "cannot make cgroup " + path + ": " + std::strerror(errno));
  }
  if (memory_max > 0 && features_.memory) {
    if (int err = write_text(path + "/memory.max", std::to_string(memory_max)); err != 0) {
      rmdir(path.c_str());
      return fail(ErrorCode::kIo, "cannot set " + path + "/memory.max: " + std::strerror(err));
    }
    // A request is of memory: past it the task fails rather than swaps, and
    // the OOM killer ends all of it, not one helper of a render wrapper.
    (void)write_text(path + "/memory.swap.max", "0");
    (void)write_text(path + "/memory.oom.group", "1");
  }
  int fd = open((path + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    rmdir(path.c_str());
    return fail(ErrorCode::kIo, "cannot open " + path + "/cgroup.procs: " + std::strerror(err));
  }
  return TaskCgroup(path, fd, features_);
}

void TaskCgroups::remove(TaskCgroup cgroup) {
  if (cgroup.path().empty()) return;
  if (rmdir(cgroup.path().c_str()) != 0 && errno != ENOENT) {
    pending_removals_.push_back(cgroup.path());
  }
}

void TaskCgroups::retry_removals() {
  std::erase_if(pending_removals_, [](const std::string& path) {
    return rmdir(path.c_str()) == 0 || errno == ENOENT;
  });
}

}  // namespace farmhand::worker
