#include "workers/process_runner.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
    // Most templates add nothing: skip building a key per variable then.
    if (!extra.empty() && extra.count(std::string(text.substr(0, text.find('=')))) != 0) continue;
    env.emplace_back(text);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

// Moves fd to a number above stdin/stdout/stderr (closing the original), so
// the dup2 calls that set those up in the child cannot clobber it. Only a
// worker started with a closed stdio descriptor ever needs this.
int move_above_stdio(int fd) {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  int saved = errno;
  close(fd);
  errno = saved;
  return moved;
}

// The kernel's signal set size, which the raw rt_sig* calls take (glibc's
// sigset_t is larger).
constexpr size_t kKernelSigsetBytes = (NSIG - 1) / 8;

// An all-zero kernel sigaction is SIG_DFL with no flags and an empty mask on
// every architecture (SIG_DFL is 0); sized above any kernel's struct.
constexpr unsigned long kDefaultAction[8] = {};
constexpr unsigned long kNoSignals[4] = {};

constexpr size_t kChildStackBytes = 256 * 1024;  // mostly untouched; exec needs little

// What the child reads; built by the parent before the clone, since the child
// must not allocate.
struct ChildArgs {
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  // Paths to execve in turn, the PATH lookup done by the parent (execvp may
  // allocate); the child's first hit wins, as in execvp.
  const char* const* candidates = nullptr;
  size_t candidate_count = 0;
  // {"/bin/sh", <slot>, argv[1], ..., nullptr} for a program without a #! line
  // (ENOEXEC), which execvp runs with the shell; slot 1 is reserved for the
  // child to fill with the path: the one write it makes to the parent's memory.
  char** script_argv = nullptr;
  int log_fd = -1;
  int null_fd = -1;
  int error_fd = -1;  // close-on-exec; gets the child's errno if exec fails
  pid_t parent = -1;
};

[[noreturn]] void child_fail(int error_fd, int err) {
  ssize_t ignored = write(error_fd, &err, sizeof err);
  (void)ignored;
  _exit(127);
}

// Runs in the child, on its own stack but in the worker's memory, while the
// spawning thread waits: only system calls, nothing that allocates, takes a
// lock or writes worker state (libc's wrappers set errno, the spawning
// thread's, which the parent reads only when the clone itself failed). Every
// signal is blocked on entry (inherited from the parent).
int spawn_child(void* raw) {
  const ChildArgs& args = *static_cast<const ChildArgs*>(raw);
  // Raw calls, unlike sigaction(), also reach glibc's reserved signals. They
  // fail for SIGKILL and SIGSTOP: fine.
  for (int sig = 1; sig < NSIG; ++sig) {
    syscall(SYS_rt_sigaction, sig, kDefaultAction, nullptr, kKernelSigsetBytes);
  }
  if (setpgid(0, 0) != 0) child_fail(args.error_fd, errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(args.error_fd, errno);
  // The worker may have died before prctl took effect; then nobody would
  // ever kill us.
  if (getppid() != args.parent) _exit(127);
  // Only now, with no handler of the worker's left to run here.
  if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, kNoSignals, nullptr, kKernelSigsetBytes) != 0) {
    child_fail(args.error_fd, errno);
  }

  if (dup2(args.null_fd, STDIN_FILENO) < 0) child_fail(args.error_fd, errno);
  if (dup2(args.log_fd, STDOUT_FILENO) < 0) child_fail(args.error_fd, errno);
  if (dup2(args.log_fd, STDERR_FILENO) < 0) child_fail(args.error_fd, errno);
  // Other descriptors the worker forgot to mark close-on-exec (sockets,
  // other tasks' logs) must not leak into the task. Needs Linux 5.11; on
  // older kernels this fails and we carry on.
  close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC);

  // execvp's search: go on past a missing or inaccessible candidate, stop at
  // any other error; EACCES wins over ENOENT once the list is exhausted.
  int err = ENOENT;
  bool denied = false;
  for (size_t i = 0; i < args.candidate_count; ++i) {
    execve(args.candidates[i], args.argv, args.envp);
    err = errno;
    if (err == ENOEXEC) {
      args.script_argv[1] = const_cast<char*>(args.candidates[i]);
      execve(args.script_argv[0], args.script_argv, args.envp);
      // Report the program's own error rather than the shell's.
      child_fail(args.error_fd, ENOEXEC);
    }
    if (err == EACCES) {
      denied = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV &&
               err != ETIMEDOUT) {
      child_fail(args.error_fd, err);
    }
  }
  child_fail(args.error_fd, denied ? EACCES : err);
}

// The paths execvp would try for `program`, in order: the program itself when
// it names a path, else each PATH entry of the worker's own environment (not
// the run's) joined with it, an empty entry meaning the current directory.
std::vector<std::string> exec_candidates(const std::string& program) {
  if (program.find('/') != std::string::npos) return {program};
  const char* path = getenv("PATH");
  // glibc's execvp default when PATH is unset.
  std::string_view dirs = path != nullptr ? path : "/bin:/usr/bin";
  std::vector<std::string> candidates;
  for (;;) {
    size_t colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    if (dir.empty()) {
      candidates.push_back(program);
    } else {
      std::string candidate(dir);
      candidate += '/';
      candidate += program;
      candidates.push_back(std::move(candidate));
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return candidates;
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
  if (null_fd_ >= 0) close(null_fd_);
  if (child_stack_ != nullptr) munmap(child_stack_, kChildStackBytes);
}

bool ProcessRunner::prepare_spawning() {
  if (null_fd_ < 0) {
    null_fd_ = move_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (null_fd_ < 0) return false;
  }
  if (child_stack_ == nullptr) {
    void* stack = mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return false;
    // A guard page, so an overflowing child faults instead of writing over
    // whatever the worker mapped below.
    if (mprotect(stack, static_cast<size_t>(getpagesize()), PROT_NONE) != 0) {
      int saved = errno;
      munmap(stack, kChildStackBytes);
      errno = saved;
      return false;
    }
    child_stack_ = stack;
  }
  return true;
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
  run->log_fd = move_above_stdio(
      open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
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

  const std::string& program = command[0];
  auto cannot_start = [&](int err) {
    run.failure = Error{err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInternal,
                        "cannot start '" + program + "': " + errno_text(err)};
  };
  if (!prepare_spawning()) return cannot_start(errno);

  // Everything the child needs is built here: it must not allocate.
  std::vector<char*> argv;
  for (const std::string& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : run.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  std::vector<std::string> candidates = exec_candidates(program);
  std::vector<const char*> candidate_ptrs;
  for (const std::string& candidate : candidates) candidate_ptrs.push_back(candidate.c_str());
  std::vector<char*> script_argv = {const_cast<char*>("/bin/sh"), nullptr};
  script_argv.insert(script_argv.end(), argv.begin() + 1, argv.end());

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) return cannot_start(errno);
  error_pipe[1] = move_above_stdio(error_pipe[1]);
  if (error_pipe[1] < 0) {
    int err = errno;
    close(error_pipe[0]);
    return cannot_start(err);
  }

  ChildArgs args;
  args.argv = argv.data();
  args.envp = envp.data();
  args.candidates = candidate_ptrs.data();
  args.candidate_count = candidate_ptrs.size();
  args.script_argv = script_argv.data();
  args.log_fd = run.log_fd;
  args.null_fd = null_fd_;
  args.error_fd = error_pipe[1];
  args.parent = getpid();

  // Block every signal, glibc's reserved ones included (hence the raw call;
  // pthread_sigmask leaves those out), so the child starts with all blocked.
  sigset_t all_signals;
  sigset_t previous;
  std::memset(&all_signals, 0xff, sizeof all_signals);
  sigemptyset(&previous);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_signals, &previous, kKernelSigsetBytes);
  // The stack grows down on every architecture Linux runs the worker on.
  char* stack_top = static_cast<char*>(child_stack_) + kChildStackBytes;
  pid_t pid = clone(spawn_child, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, kKernelSigsetBytes);
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    return cannot_start(clone_errno);
  }
  // The child has exec'd or exited by now (CLONE_VFORK), so its process group
  // exists before anyone may signal it: no need to set it from here too.

  // Returns at once, or as soon as the exec'ing child has closed its
  // close-on-exec descriptors.
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
    return cannot_start(child_errno);
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
