#include "workers/process_runner.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/byte_size.h"

namespace farmhand::worker {

struct ProcessRunner::Run {
  RunSpec spec;
  SteadyTime started;
  std::optional<SteadyTime> deadline;  // from spec.timeout; none when 0
  int log_fd = -1;
  // Environment, stdio, group and parent-death signal, built once in start();
  // argv is set per command.
  common::SpawnSpec spawn_spec;
  size_t index = 0;  // current command
  pid_t pid = -1;    // current group leader, -1 when none is alive
  // The current command's process group: set at spawn, kept after its leader
  // was reaped until its other members are (or drain_until passes).
  pid_t group = -1;
  std::optional<int> leader_status;  // the current leader's wait status, once reaped
  std::optional<SteadyTime> drain_until;
  TaskUsage usage;
  // Set once the group was signalled for a timeout or cancel; it is the
  // outcome whatever the leader's exit status turns out to be.
  std::optional<Error> kill_reason;
  std::optional<SteadyTime> kill_at;  // pending SIGKILL escalation
  // A spawn failure waiting to be reported by poll().
  std::optional<Error> failure;
  // Its cgroup, when TaskCgroups made one.
  std::optional<TaskCgroup> cgroup;
  // Killed by sample() for passing spec.memory_limit.
  bool memory_exceeded = false;

  Run() = default;
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  ~Run() {
    if (log_fd >= 0) close(log_fd);
  }
};

namespace {

// SIGKILLed members of a group die within milliseconds unless stuck in the
// kernel (D state); one that takes longer is left to reap_strays, and its CPU
// time goes uncounted rather than hold up the result.
constexpr auto kDrainTimeout = std::chrono::seconds(1);

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    // The log is best effort: a full disk must not stop the task itself.
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

// Quotes an argument the way a shell would need it, so a logged command line
// can be copied and re-run by hand.
std::string shell_quote(const std::string& arg) {
  constexpr std::string_view kSafe =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%";
  if (!arg.empty() && arg.find_first_not_of(kSafe) == std::string::npos) return arg;
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += '\'';
  return quoted;
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) line += ' ';
    line += shell_quote(arg);
  }
  return line;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

ProcessRunner::ProcessRunner(std::chrono::milliseconds kill_grace, common::Spawner& spawner,
                             std::chrono::milliseconds rss_sample_interval, TaskCgroups* cgroups)
    : kill_grace_(kill_grace),
      spawner_(spawner),
      rss_sample_interval_(rss_sample_interval),
      cgroups_(cgroups != nullptr && cgroups->enabled() ? cgroups : nullptr) {}

ProcessRunner::~ProcessRunner() {
  for (auto& [id, run] : runs_) {
    if (run->cgroup) run->cgroup->kill();
    if (run->pid > 0) {
      spawner_.signal_group(run->pid, SIGKILL);
      (void)spawner_.wait(run->pid);
    }
    if (run->cgroup) cgroups_->remove(std::move(*run->cgroup));
  }
}

void ProcessRunner::kill_all(Run& run) {
  if (run.cgroup) run.cgroup->kill();
  if (run.pid > 0) spawner_.signal_group(run.pid, SIGKILL);
}

bool ProcessRunner::sampled(const Run& run) const {
  if (!run.cgroup) return true;
  const CgroupFeatures& features = cgroups_->features();
  return !features.memory_peak || (run.spec.memory_limit > 0 && !features.memory);
}

bool ProcessRunner::collect(Run& run) {
  for (;;) {
    Result<std::optional<common::Reaped>> reaped = spawner_.try_reap_group(run.group);
    // kNotFound: none left. Any other error: nothing more can be learnt either.
    if (!reaped) return true;
    if (!reaped->has_value()) return false;
    const common::Reaped& r = **reaped;
    run.usage.cpu_user += r.usage.user;
    run.usage.cpu_system += r.usage.system;
    run.usage.peak_rss_bytes = std::max(run.usage.peak_rss_bytes, r.usage.max_rss_bytes);
    if (r.pid == run.pid) run.leader_status = r.status;
  }
}

void ProcessRunner::sample(SteadyTime now) {
  if (rss_sample_interval_.count() <= 0 || now < next_sample_) return;
  next_sample_ = now + rss_sample_interval_;
  // A cgroup lists its processes, setsid ones too; a group needs a /proc scan.
  std::set<pid_t> groups;
  for (const auto& [id, run] : runs_) {
    if (run->group > 0 && !run->cgroup) groups.insert(run->group);
  }
  const std::map<pid_t, uint64_t> by_group = rss_by_group(groups);
  for (auto& [id, run] : runs_) {
    if (run->group <= 0 || !sampled(*run)) continue;
    uint64_t rss = 0;
    if (run->cgroup) {
      rss = rss_of(run->cgroup->pids());
    } else if (auto it = by_group.find(run->group); it != by_group.end()) {
      rss = it->second;
    }
    run->usage.peak_rss_bytes = std::max(run->usage.peak_rss_bytes, rss);
    const bool enforced_here =
        run->spec.memory_limit > 0 && !(run->cgroup && cgroups_->features().memory);
    if (enforced_here && rss > run->spec.memory_limit && !run->kill_reason && run->pid > 0) {
      // Past its request: no grace, as the kernel's OOM killer gives none.
      run->memory_exceeded = true;
      run->kill_reason = Error{ErrorCode::kCrashed, "killed: out of memory"};
      run->kill_at.reset();
      kill_all(*run);
    }
  }
}

std::optional<Error> ProcessRunner::classify(Run& run, std::optional<Error> error,
                                             bool& out_of_memory) {
  uint64_t oom_kills = 0;
  if (run.cgroup) {
    // Read once every process in it has ended: nothing is left to count.
    const CgroupUsage counted = run.cgroup->usage();
    if (counted.cpu) {
      run.usage.cpu_user = counted.cpu->user;
      run.usage.cpu_system = counted.cpu->system;
    }
    if (counted.memory_peak) run.usage.peak_rss_bytes = *counted.memory_peak;
    oom_kills = counted.oom_kills;
    cgroups_->remove(std::move(*run.cgroup));
    run.cgroup.reset();
  }
  if (!error || error->code == ErrorCode::kCancelled || error->code == ErrorCode::kTimeout) {
    return error;
  }
  const uint64_t limit = run.spec.memory_limit;
  const uint64_t peak = run.usage.peak_rss_bytes;
  // Without a memory controller the kernel's verdict is not recorded anywhere:
  // a SIGKILL nobody here sent, with the sampled peak near the limit, is taken
  // for the OOM killer.
  const bool sigkilled_near_limit =
      !run.kill_reason && run.usage.exit_signal == SIGKILL && limit > 0 && peak >= limit / 10 * 9;
  if (!run.memory_exceeded && oom_kills == 0 && !sigkilled_near_limit) return error;
  out_of_memory = true;
  std::string reason = "killed: out of memory at " + common::format_byte_size(peak) + " peak";
  // The limit was the worker's to enforce (memory.max or sampling): say so.
  if (limit > 0 && (run.memory_exceeded || oom_kills > 0)) {
    reason += " (past its " + common::format_byte_size(limit) + " request)";
  }
  return Error{ErrorCode::kCrashed, std::move(reason)};
}

bool ProcessRunner::owns_group(pid_t pgid) const {
  if (pgid <= 0) return false;
  for (const auto& [id, run] : runs_) {
    if (run->group == pgid) return true;
  }
  return false;
}

Result<void> ProcessRunner::start(RunSpec spec, SteadyTime now) {
  if (spec.commands.empty()) {
    return fail(ErrorCode::kInvalidArgument, "run " + std::to_string(spec.id) + " has no commands");
  }
  for (const auto& argv : spec.commands) {
    if (argv.empty() || argv[0].empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  "run " + std::to_string(spec.id) + " has an empty command");
    }
  }
  for (const auto& [name, value] : spec.env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "bad environment variable name '" + name + "' in run " + std::to_string(spec.id));
    }
  }
  if (runs_.count(spec.id) != 0) {
    return fail(ErrorCode::kInvalidArgument, "run " + std::to_string(spec.id) + " already running");
  }

  auto run = std::make_unique<Run>();
  run->log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (run->log_fd < 0) {
    return fail(ErrorCode::kIo, "cannot open log " + spec.log_path + ": " + errno_text(errno));
  }
  common::SpawnSpec& spawn_spec = run->spawn_spec;
  for (const auto& [name, value] : spec.env) spawn_spec.env.push_back(name + "=" + value);
  spawn_spec.stdin_fd = common::StdioFd::null();
  spawn_spec.stdout_fd = common::StdioFd::from(run->log_fd);
  spawn_spec.stderr_fd = common::StdioFd::from(run->log_fd);
  spawn_spec.new_process_group = true;
  spawn_spec.parent_death_signal = SIGKILL;
  if (cgroups_ != nullptr) {
    Result<TaskCgroup> cgroup = cgroups_->create(spec.memory_limit);
    if (cgroup) {
      spawn_spec.cgroup_procs_fd = cgroup->procs_fd();
      run->cgroup = std::move(*cgroup);
    } else {
      write_all(run->log_fd, "farmhand: no cgroup for this task, running it as a process group: " +
                                 cgroup.error().reason + "\n");
    }
  }
  run->started = now;
  if (spec.timeout.count() > 0) run->deadline = now + spec.timeout;
  run->spec = std::move(spec);

  Run& started = *run;
  runs_.emplace(started.spec.id, std::move(run));
  spawn(started);
  return {};
}

void ProcessRunner::spawn(Run& run) {
  const std::vector<std::string>& command = run.spec.commands[run.index];
  write_all(run.log_fd, "farmhand: running " + command_line(command) + "\n");
  run.spawn_spec.argv = command;
  // The exit is the last command's: none when it cannot be started.
  run.usage.exit_code.reset();
  run.usage.exit_signal = 0;
  Result<pid_t> pid = spawner_.spawn(run.spawn_spec);
  if (!pid) {
    run.failure = pid.error();
    return;
  }
  run.pid = *pid;
  run.group = *pid;
  run.leader_status.reset();
  run.drain_until.reset();
}

void ProcessRunner::begin_kill(Run& run, Error reason, SteadyTime now) {
  run.kill_reason = std::move(reason);
  if (run.pid <= 0) return;
  if (kill_grace_.count() <= 0) {
    kill_all(run);
    return;
  }
  spawner_.signal_group(run.pid, SIGTERM);
  run.kill_at = now + kill_grace_;
}

void ProcessRunner::cancel(uint64_t id, SteadyTime now) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  // A run already being killed keeps its first reason; a run that failed to
  // start has nothing left to kill and reports that failure.
  if (run.kill_reason || run.failure) return;
  begin_kill(run, Error{ErrorCode::kCancelled, "cancelled"}, now);
}

std::optional<RunOutcome> ProcessRunner::advance(Run& run, SteadyTime now) {
  auto finish = [&](std::optional<Error> error) {
    RunOutcome outcome;
    error = classify(run, std::move(error), outcome.out_of_memory);
    if (error) write_all(run.log_fd, "farmhand: " + error->reason + "\n");
    outcome.id = run.spec.id;
    outcome.succeeded = !error.has_value();
    outcome.error = std::move(error);
    outcome.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - run.started);
    outcome.usage = run.usage;
    outcome.usage.wall = std::chrono::duration_cast<std::chrono::microseconds>(now - run.started);
    return outcome;
  };
  const Error timed_out{ErrorCode::kTimeout,
                        "timed out after " + std::to_string(run.spec.timeout.count()) + " s"};

  for (;;) {
    if (run.failure) return finish(run.failure);
    FARMHAND_CHECK(run.group > 0);
    const std::string& program = run.spec.commands[run.index][0];

    if (run.pid > 0) {
      const bool empty = collect(run);
      if (!run.leader_status && !empty) {
        if (!run.kill_reason && run.deadline && now >= *run.deadline) {
          begin_kill(run, timed_out, now);
        }
        if (run.kill_at && now >= *run.kill_at) {
          kill_all(run);
          run.kill_at.reset();
        }
        return std::nullopt;
      }
      // The leader is gone. Whatever it left in its group or cgroup (a
      // renderer's helpers, a child that ignored SIGTERM, a setsid daemon)
      // must not outlive it, whoever's children they are now; those the worker
      // adopted are reaped below, so their CPU time counts.
      kill_all(run);
      run.pid = -1;
      run.kill_at.reset();
      run.drain_until = now + kDrainTimeout;
      if (!(empty || collect(run)) || (run.cgroup && run.cgroup->populated())) {
        return std::nullopt;
      }
    } else if ((!collect(run) || (run.cgroup && run.cgroup->populated())) &&
               now < *run.drain_until) {
      // Without cgroup.kill, a process forked since the last round needs another.
      if (run.cgroup) run.cgroup->kill();
      return std::nullopt;
    }
    run.group = -1;
    run.drain_until.reset();

    if (!run.leader_status) {
      // Someone else reaped our child (a waitpid(-1) elsewhere): its status is lost.
      return finish(Error{ErrorCode::kInternal, "lost exit status of " + program});
    }
    const int status = *run.leader_status;
    if (WIFSIGNALED(status)) {
      run.usage.exit_signal = WTERMSIG(status);
    } else if (WIFEXITED(status)) {
      run.usage.exit_code = WEXITSTATUS(status);
    }
    if (run.kill_reason) return finish(run.kill_reason);
    if (WIFSIGNALED(status)) {
      return finish(Error{ErrorCode::kCrashed, "killed by signal " + signal_name(WTERMSIG(status)) +
                                                   " running " + program});
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != 0) {
      return finish(
          Error{ErrorCode::kInternal, "exit code " + std::to_string(code) + " from " + program});
    }
    if (++run.index == run.spec.commands.size()) return finish(std::nullopt);
    if (run.deadline && now >= *run.deadline) return finish(timed_out);
    spawn(run);
  }
}

std::optional<std::string> ProcessRunner::cgroup_path(uint64_t id) const {
  auto it = runs_.find(id);
  if (it == runs_.end() || !it->second->cgroup) return std::nullopt;
  return it->second->cgroup->path();
}

std::vector<RunOutcome> ProcessRunner::poll(SteadyTime now) {
  sample(now);
  std::vector<RunOutcome> finished;
  for (auto it = runs_.begin(); it != runs_.end();) {
    std::optional<RunOutcome> outcome = advance(*it->second, now);
    if (outcome) {
      finished.push_back(std::move(*outcome));
      it = runs_.erase(it);
    } else {
      ++it;
    }
  }
  return finished;
}

std::optional<SteadyTime> ProcessRunner::next_deadline() const {
  std::optional<SteadyTime> earliest;
  auto consider = [&earliest](SteadyTime t) {
    if (!earliest || t < *earliest) earliest = t;
  };
  for (const auto& [id, run] : runs_) {
    if (run->failure) {
      // Already due: the failure waits only for the next poll().
      consider(run->started);
    } else if (run->drain_until) {
      consider(*run->drain_until);
    } else if (run->kill_at) {
      consider(*run->kill_at);
    } else if (!run->kill_reason && run->deadline) {
      consider(*run->deadline);
    }
    // A limit only sampling enforces needs its samples on time.
    const bool enforced_by_sampling =
        run->spec.memory_limit > 0 && !(run->cgroup && cgroups_->features().memory);
    if (enforced_by_sampling && rss_sample_interval_.count() > 0 && !run->kill_reason) {
      consider(next_sample_);
    }
  }
  return earliest;
}

size_t ProcessRunner::running() const {
  return runs_.size();
}

std::optional<pid_t> ProcessRunner::leader_pid(uint64_t id) const {
  auto it = runs_.find(id);
  if (it == runs_.end() || it->second->pid <= 0) return std::nullopt;
  return it->second->pid;
}

std::string read_log_tail(const std::string& path, size_t max_bytes) {
  if (max_bytes == 0) return "";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";

  struct stat info {};

  if (fstat(fd, &info) != 0) {
    close(fd);
    return "";
  }
  size_t size = static_cast<size_t>(info.st_size);
  size_t start = size > max_bytes ? size - max_bytes : 0;
  // Read one byte before the window too: if it is a newline, the window
  // already starts on a line boundary and nothing needs cutting.
  size_t read_from = start > 0 ? start - 1 : 0;
  std::string buffer(size - read_from, '\0');
  size_t filled = 0;
  while (filled < buffer.size()) {
    ssize_t n = pread(fd, buffer.data() + filled, buffer.size() - filled,
                      static_cast<off_t>(read_from + filled));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the file shrank, or an I/O error: return what we have
    filled += static_cast<size_t>(n);
  }
  close(fd);
  buffer.resize(filled);
  if (start == 0) return buffer;

  size_t newline = buffer.find('\n');
  if (newline == std::string::npos) return buffer.substr(std::min<size_t>(1, buffer.size()));
  return buffer.substr(newline + 1);
}

}  // namespace farmhand::worker
