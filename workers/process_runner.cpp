#include "workers/process_runner.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::worker {

struct ProcessRunner::Run {
  RunSpec spec;
  SteadyTime started;
  std::optional<SteadyTime> deadline;  // from spec.timeout; none when 0
  int log_fd = -1;
  std::vector<std::string> env;  // "NAME=value", built once in start()
  size_t index = 0;              // current command
  pid_t pid = -1;                // current group leader, -1 when none is alive
  // Set once the group was signalled for a timeout or cancel; it is the
  // outcome whatever the leader's exit status turns out to be.
  std::optional<Error> kill_reason;
  std::optional<SteadyTime> kill_at;  // pending SIGKILL escalation
  // A fork/exec failure waiting to be reported by poll().
  std::optional<Error> failure;

  Run() = default;
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  ~Run() {
    if (log_fd >= 0) close(log_fd);
  }
};

namespace {

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

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev == nullptr) return "signal " + std::to_string(sig);
  return std::string("SIG") + abbrev;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// The environment of the child: the worker's own, with the run's entries
// added or replacing same-named ones.
std::vector<std::string> merged_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    std::string_view name = text.substr(0, text.find('='));
    if (extra.count(std::string(name)) == 0) env.emplace_back(text);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

// Moves fd to a number above stdin/stdout/stderr so the dup2 calls that set
// those up cannot clobber it. Async-signal-safe.
int move_above_stdio(int fd) {
  if (fd > STDERR_FILENO) return fd;
  return fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
}

// Runs in the forked child: only async-signal-safe calls from here to exec,
// since the worker may hold locks (malloc, spdlog) that no longer have an
// owner in this copy of the process. Any failure is reported as an errno on
// error_fd, which closes without data when exec succeeds.
[[noreturn]] void exec_child(char* const* argv, char* const* envp, int log_fd, int error_fd,
                             pid_t parent) {
  error_fd = move_above_stdio(error_fd);
  auto fail = [error_fd](int err) {
    if (error_fd >= 0) {
      ssize_t ignored = write(error_fd, &err, sizeof err);
      (void)ignored;
    }
    _exit(127);
  };
  if (error_fd < 0) fail(errno);
  if (setpgid(0, 0) != 0) fail(errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
  // The worker may have died before prctl took effect; then nobody would
  // ever kill us.
  if (getppid() != parent) _exit(127);

  // The worker blocks SIGCHLD/SIGTERM for its signalfd and ignores SIGPIPE;
  // exec keeps both the mask and ignored dispositions, so reset them all.
  // sigaction fails for SIGKILL, SIGSTOP and glibc's internal signals: fine.
  struct sigaction default_action {};

  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &default_action, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(errno);

  log_fd = move_above_stdio(log_fd);
  if (log_fd < 0) fail(errno);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) fail(errno);
  if (dup2(null_fd, STDIN_FILENO) < 0) fail(errno);
  if (dup2(log_fd, STDOUT_FILENO) < 0) fail(errno);
  if (dup2(log_fd, STDERR_FILENO) < 0) fail(errno);
  // Other descriptors the worker forgot to mark close-on-exec (sockets,
  // other tasks' logs) must not leak into the task. Needs Linux 5.11; on
  // older kernels this fails and we carry on.
  close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC);

  // PATH is looked up in the worker's environment, not in envp.
  execvpe(argv[0], argv, envp);
  fail(errno);
  _exit(127);  // not reached: fail() exits
}

}  // namespace

ProcessRunner::ProcessRunner(std::chrono::milliseconds kill_grace) : kill_grace_(kill_grace) {}

ProcessRunner::~ProcessRunner() {
  for (auto& [id, run] : runs_) {
    if (run->pid <= 0) continue;
    kill(-run->pid, SIGKILL);
    int status = 0;
    while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
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
  run->env = merged_environment(spec.env);
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

  // Everything the child needs is built here: allocating after fork is not
  // async-signal-safe.
  std::vector<char*> argv;
  for (const std::string& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : run.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  const std::string& program = command[0];
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    run.failure =
        Error{ErrorCode::kInternal, "cannot start '" + program + "': " + errno_text(errno)};
    return;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) exec_child(argv.data(), envp.data(), run.log_fd, error_pipe[1], parent);
  int fork_errno = errno;
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    run.failure =
        Error{ErrorCode::kInternal, "cannot start '" + program + "': " + errno_text(fork_errno)};
    return;
  }
  // Also set the group here: whichever of parent and child runs first, the
  // group exists before anyone may signal it. Fails harmlessly (EACCES) once
  // the child has exec'd.
  setpgid(pid, pid);

  // Blocks only until the child execs or fails, which is immediate.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(error_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n != 0) {
    if (n < 0) child_errno = errno;
    if (n > 0 && n != static_cast<ssize_t>(sizeof child_errno)) child_errno = EIO;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    run.failure = Error{child_errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInternal,
                        "cannot start '" + program + "': " + errno_text(child_errno)};
    return;
  }
  run.pid = pid;
}

void ProcessRunner::begin_kill(Run& run, Error reason, SteadyTime now) {
  run.kill_reason = std::move(reason);
  if (run.pid <= 0) return;
  if (kill_grace_.count() <= 0) {
    kill(-run.pid, SIGKILL);
    return;
  }
  kill(-run.pid, SIGTERM);
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
    if (error) write_all(run.log_fd, "farmhand: " + error->reason + "\n");
    RunOutcome outcome;
    outcome.id = run.spec.id;
    outcome.succeeded = !error.has_value();
    outcome.error = std::move(error);
    outcome.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - run.started);
    return outcome;
  };
  const Error timed_out{ErrorCode::kTimeout,
                        "timed out after " + std::to_string(run.spec.timeout.count()) + " s"};

  for (;;) {
    if (run.failure) return finish(run.failure);
    FARMHAND_CHECK(run.pid > 0);  // waitpid(-1) would reap children we do not own
    const std::string& program = run.spec.commands[run.index][0];

    int status = 0;
    pid_t reaped;
    do {
      reaped = waitpid(run.pid, &status, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    int wait_errno = errno;

    if (reaped == 0) {
      if (!run.kill_reason && run.deadline && now >= *run.deadline) {
        begin_kill(run, timed_out, now);
      }
      if (run.kill_at && now >= *run.kill_at) {
        kill(-run.pid, SIGKILL);
        run.kill_at.reset();
      }
      return std::nullopt;
    }

    // The leader is gone. Whatever it left in its group (a renderer's
    // helpers, a child that ignored SIGTERM) must not outlive it.
    kill(-run.pid, SIGKILL);
    run.pid = -1;
    run.kill_at.reset();
    if (reaped < 0) {
      // Someone else reaped our child (a waitpid(-1) elsewhere): its status is lost.
      return finish(Error{ErrorCode::kInternal,
                          "lost exit status of " + program + ": " + errno_text(wait_errno)});
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

std::vector<RunOutcome> ProcessRunner::poll(SteadyTime now) {
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
    } else if (run->kill_at) {
      consider(*run->kill_at);
    } else if (!run->kill_reason && run->deadline) {
      consider(*run->deadline);
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
