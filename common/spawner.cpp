#include "common/spawner.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string_view>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::common {

namespace {

// The kernel's signal set size, which the raw rt_sig* calls take (glibc's
// sigset_t is larger).
constexpr size_t kKernelSigsetBytes = (NSIG - 1) / 8;

// An all-zero kernel sigaction is SIG_DFL with no flags and an empty mask on
// every architecture (SIG_DFL is 0); sized above any kernel's struct.
constexpr unsigned long kDefaultAction[8] = {};
constexpr unsigned long kNoSignals[4] = {};

constexpr size_t kChildStackBytes = 256 * 1024;  // mostly untouched; exec needs little

// Descriptors a child can be given: its three standard ones plus this many more.
constexpr size_t kMaxExtraFds = 8;
constexpr size_t kMaxFds = 3 + kMaxExtraFds;

// The step of the child's set-up that failed, sent back with its errno.
enum class Step : int {
  kExec,
  kCgroup,
  kGroup,
  kParentDeath,
  kSignals,
  kLimit,
  kDescriptors,
  kDirectory
};

struct ChildFailure {
  Step step = Step::kExec;
  int err = 0;
};

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
  // {child's number, parent's descriptor}, fd_count of them.
  int fds[kMaxFds][2] = {};
  size_t fd_count = 0;
  int lowest_free = 3;  // above every child number in `fds`
  const rlimit* limits = nullptr;
  const int* limit_resources = nullptr;
  size_t limit_count = 0;
  const char* working_dir = nullptr;
  bool new_group = false;
  int death_signal = 0;
  int cgroup_procs_fd = -1;  // close-on-exec; "0" is written to it when >= 0
  int error_fd = -1;         // close-on-exec; gets a ChildFailure if the child cannot exec
  pid_t parent = -1;
};

[[noreturn]] void child_fail(int error_fd, Step step, int err) {
  ChildFailure failure{step, err};
  ssize_t ignored = write(error_fd, &failure, sizeof failure);
  (void)ignored;
  _exit(127);
}

// Runs in the child, on its own stack but in the parent's memory, while the
// spawning thread waits: only system calls, nothing that allocates, takes a
// lock or writes parent state (libc's wrappers set errno, the spawning
// thread's, which the parent reads only when the clone itself failed). Every
// signal is blocked on entry (inherited from the parent). The descriptor
// table is the child's own copy (no CLONE_FILES).
int spawn_child(void* raw) {
  const ChildArgs& args = *static_cast<const ChildArgs*>(raw);
  // Raw calls, unlike sigaction(), also reach glibc's reserved signals. They
  // fail for SIGKILL and SIGSTOP: fine.
  for (int sig = 1; sig < NSIG; ++sig) {
    syscall(SYS_rt_sigaction, sig, kDefaultAction, nullptr, kKernelSigsetBytes);
  }
  // Out of the way of the descriptors to be set up, so none of them clobbers it.
  int error_fd = fcntl(args.error_fd, F_DUPFD_CLOEXEC, args.lowest_free);
  if (error_fd < 0) child_fail(args.error_fd, Step::kDescriptors, errno);
  // Before anything else: a process that joins a cgroup moves alone, so this
  // must happen while the child is the only process it will ever be.
  if (args.cgroup_procs_fd >= 0 && write(args.cgroup_procs_fd, "0", 1) != 1) {
    child_fail(error_fd, Step::kCgroup, errno);
  }
  if (args.new_group && setpgid(0, 0) != 0) child_fail(error_fd, Step::kGroup, errno);
  if (args.death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, args.death_signal) != 0) {
      child_fail(error_fd, Step::kParentDeath, errno);
    }
    // The parent may have died before prctl took effect; then nobody would
    // ever signal us.
    if (getppid() != args.parent) _exit(127);
  }
  // Only now, with no handler of the parent's left to run here.
  if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, kNoSignals, nullptr, kKernelSigsetBytes) != 0) {
    child_fail(error_fd, Step::kSignals, errno);
  }
  for (size_t i = 0; i < args.limit_count; ++i) {
    if (setrlimit(static_cast<__rlimit_resource_t>(args.limit_resources[i]), &args.limits[i]) !=
        0) {
      child_fail(error_fd, Step::kLimit, errno);
    }
  }

  // First every source above the targets, then onto the targets: a source may
  // sit on another mapping's target number (a log opened while stdout was
  // closed), or on its own (dup2 onto itself would keep close-on-exec).
  int moved[kMaxFds];
  for (size_t i = 0; i < args.fd_count; ++i) {
    moved[i] = fcntl(args.fds[i][1], F_DUPFD_CLOEXEC, args.lowest_free);
    if (moved[i] < 0) child_fail(error_fd, Step::kDescriptors, errno);
  }
  for (size_t i = 0; i < args.fd_count; ++i) {
    if (dup2(moved[i], args.fds[i][0]) < 0) child_fail(error_fd, Step::kDescriptors, errno);
  }
  // Other descriptors the parent forgot to mark close-on-exec (sockets, other
  // tasks' logs) must not leak into the child. Needs Linux 5.11; on older
  // kernels this fails and we carry on.
  close_range(static_cast<unsigned>(args.lowest_free), ~0U, CLOSE_RANGE_CLOEXEC);

  if (args.working_dir != nullptr && chdir(args.working_dir) != 0) {
    child_fail(error_fd, Step::kDirectory, errno);
  }

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
      child_fail(error_fd, Step::kExec, ENOEXEC);
    }
    if (err == EACCES) {
      denied = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV &&
               err != ETIMEDOUT) {
      child_fail(error_fd, Step::kExec, err);
    }
  }
  child_fail(error_fd, Step::kExec, denied ? EACCES : err);
}

// The paths execvp would try for `program`, in order: the program itself when
// it names a path, else each PATH entry of the parent's environment (not the
// child's) joined with it, an empty entry meaning the current directory.
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

std::string_view name_of(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

std::string step_text(Step step, const SpawnSpec& spec) {
  switch (step) {
    case Step::kExec:
      return "";
    case Step::kCgroup:
      return "joining its cgroup: ";
    case Step::kGroup:
      return "setpgid: ";
    case Step::kParentDeath:
      return "PR_SET_PDEATHSIG: ";
    case Step::kSignals:
      return "signal mask: ";
    case Step::kLimit:
      return "setrlimit: ";
    case Step::kDescriptors:
      return "descriptors: ";
    case Step::kDirectory:
      return "working dir " + spec.working_dir + ": ";
  }
  return "";
}

class RealSpawner final : public Spawner {
 public:
  Result<pid_t> spawn(const SpawnSpec& spec) override;

  Result<std::optional<int>> try_wait(pid_t pid) override {
    FARMHAND_CHECK(pid > 0);  // waitpid(-1) would reap children we do not own
    int status = 0;
    pid_t reaped;
    do {
      reaped = waitpid(pid, &status, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    if (reaped < 0) {
      return fail(ErrorCode::kInternal,
                  "cannot wait for process " + std::to_string(pid) + ": " + std::strerror(errno));
    }
    if (reaped == 0) return std::optional<int>();
    return std::optional<int>(status);
  }

  Result<std::optional<Reaped>> try_reap(pid_t pid) override {
    FARMHAND_CHECK(pid > 0);
    return reap(pid);
  }

  Result<std::optional<Reaped>> try_reap_group(pid_t group) override {
    FARMHAND_CHECK(group > 1);  // wait4(0 or -1) would reap children we do not own
    return reap(-group);
  }

  Result<int> wait(pid_t pid) override {
    FARMHAND_CHECK(pid > 0);
    int status = 0;
    pid_t reaped;
    do {
      reaped = waitpid(pid, &status, 0);
    } while (reaped < 0 && errno == EINTR);
    if (reaped < 0) {
      return fail(ErrorCode::kInternal,
                  "cannot wait for process " + std::to_string(pid) + ": " + std::strerror(errno));
    }
    return status;
  }

  // kill(0 or -1) would signal the caller's group or every process: never.
  void signal(pid_t pid, int sig) override {
    FARMHAND_CHECK(pid > 0);
    kill(pid, sig);
  }

  void signal_group(pid_t leader, int sig) override {
    FARMHAND_CHECK(leader > 0);
    kill(-leader, sig);
  }

 private:
  // wait4(which, WNOHANG): a pid, or minus a process group.
  static Result<std::optional<Reaped>> reap(pid_t which) {
    int status = 0;
    rusage usage{};
    pid_t reaped;
    do {
      reaped = wait4(which, &status, WNOHANG, &usage);
    } while (reaped < 0 && errno == EINTR);
    if (reaped < 0) {
      const std::string what = which > 0 ? "process " + std::to_string(which)
                                         : "process group " + std::to_string(-which);
      return fail(errno == ECHILD ? ErrorCode::kNotFound : ErrorCode::kInternal,
                  "cannot wait for " + what + ": " + std::strerror(errno));
    }
    if (reaped == 0) return std::optional<Reaped>();
    auto micros = [](const timeval& tv) {
      return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    };
    Reaped out;
    out.pid = reaped;
    out.status = status;
    out.usage.user = micros(usage.ru_utime);
    out.usage.system = micros(usage.ru_stime);
    out.usage.max_rss_bytes = static_cast<uint64_t>(std::max<long>(usage.ru_maxrss, 0)) * 1024;
    return std::optional<Reaped>(out);
  }

  // Opens /dev/null and maps the child stack on first use; false with errno
  // set when either fails. Called with mutex_ held.
  bool prepare();

  std::mutex mutex_;
  // Kept for the process rather than set up per child: the children's
  // /dev/null, and the stack a child runs on until exec (reused, as only one
  // child at a time runs on it: the spawning thread waits until it has exec'd
  // or exited, and mutex_ keeps other threads out meanwhile).
  int null_fd_ = -1;
  void* child_stack_ = nullptr;  // mapping of kChildStackBytes, lowest page a guard
};

bool RealSpawner::prepare() {
  if (null_fd_ < 0) {
    null_fd_ = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd_ < 0) return false;
  }
  if (child_stack_ == nullptr) {
    void* stack = mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return false;
    // A guard page, so an overflowing child faults instead of writing over
    // whatever the parent mapped below.
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

Result<pid_t> RealSpawner::spawn(const SpawnSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return fail(ErrorCode::kInvalidArgument, "cannot start a process without a program");
  }
  const std::string& program = spec.argv[0];
  auto cannot_start = [&](std::string_view what, int err) {
    return fail(err == ENOENT && what.empty() ? ErrorCode::kNotFound : ErrorCode::kInternal,
                "cannot start '" + program + "': " + std::string(what) + std::strerror(err));
  };
  auto bad_spec = [&](const std::string& what) {
    return fail(ErrorCode::kInvalidArgument, "cannot start '" + program + "': " + what);
  };
  if (spec.extra_fds.size() > kMaxExtraFds) return bad_spec("too many descriptors");
  for (const std::string& entry : spec.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return bad_spec("bad environment entry '" + entry + "'");
    }
  }

  // Everything the child needs is built here: it must not allocate.
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    bool replaced = false;
    for (const std::string& extra : spec.env) {
      if (name_of(extra) == name_of(*entry)) {
        replaced = true;
        break;
      }
    }
    for (const std::string& name : spec.unset_env) {
      if (name == name_of(*entry)) {
        replaced = true;
        break;
      }
    }
    if (!replaced) envp.push_back(*entry);
  }
  for (const std::string& extra : spec.env) envp.push_back(const_cast<char*>(extra.c_str()));
  envp.push_back(nullptr);
  std::vector<std::string> candidates = exec_candidates(program);
  std::vector<const char*> candidate_ptrs;
  candidate_ptrs.reserve(candidates.size());
  for (const std::string& candidate : candidates) candidate_ptrs.push_back(candidate.c_str());
  std::vector<char*> script_argv = {const_cast<char*>("/bin/sh"), nullptr};
  script_argv.insert(script_argv.end(), argv.begin() + 1, argv.end());
  std::vector<rlimit> limits;
  std::vector<int> limit_resources;
  for (const ResourceLimit& limit : spec.limits) {
    limits.push_back(rlimit{limit.value, limit.value});
    limit_resources.push_back(limit.resource);
  }

  std::lock_guard lock(mutex_);
  if (!prepare()) return cannot_start("", errno);

  ChildArgs args;
  args.argv = argv.data();
  args.envp = envp.data();
  args.candidates = candidate_ptrs.data();
  args.candidate_count = candidate_ptrs.size();
  args.script_argv = script_argv.data();
  auto add_fd = [&](int child_fd, const StdioFd& fd) {
    if (fd.kind == StdioFd::Kind::kInherit) return;
    args.fds[args.fd_count][0] = child_fd;
    args.fds[args.fd_count][1] = fd.kind == StdioFd::Kind::kNull ? null_fd_ : fd.fd;
    ++args.fd_count;
  };
  add_fd(STDIN_FILENO, spec.stdin_fd);
  add_fd(STDOUT_FILENO, spec.stdout_fd);
  add_fd(STDERR_FILENO, spec.stderr_fd);
  for (const auto& [child_fd, parent_fd] : spec.extra_fds) {
    if (child_fd <= STDERR_FILENO || parent_fd < 0) {
      return bad_spec("bad descriptor " + std::to_string(child_fd));
    }
    add_fd(child_fd, StdioFd::from(parent_fd));
    args.lowest_free = std::max(args.lowest_free, child_fd + 1);
  }
  args.limits = limits.data();
  args.limit_resources = limit_resources.data();
  args.limit_count = limits.size();
  args.working_dir = spec.working_dir.empty() ? nullptr : spec.working_dir.c_str();
  args.new_group = spec.new_process_group;
  args.death_signal = spec.parent_death_signal;
  args.cgroup_procs_fd = spec.cgroup_procs_fd;
  args.parent = getpid();

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) return cannot_start("", errno);
  args.error_fd = error_pipe[1];

  // Block every signal, glibc's reserved ones included (hence the raw call;
  // pthread_sigmask leaves those out), so the child starts with all blocked.
  sigset_t all_signals;
  sigset_t previous;
  std::memset(&all_signals, 0xff, sizeof all_signals);
  sigemptyset(&previous);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_signals, &previous, kKernelSigsetBytes);
  // The stack grows down on every architecture Linux runs farmhand on.
  char* stack_top = static_cast<char*>(child_stack_) + kChildStackBytes;
  pid_t pid = clone(spawn_child, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, kKernelSigsetBytes);
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    return cannot_start("", clone_errno);
  }
  // The child has exec'd or exited by now (CLONE_VFORK), so its process group
  // exists before anyone may signal it: no need to set it from here too.

  // Returns at once: the child's copy of the write end closed at exec or exit.
  ChildFailure failure;
  ssize_t n;
  do {
    n = read(error_pipe[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == 0) return pid;
  if (n < 0) failure = {Step::kExec, errno};
  if (n > 0 && n != static_cast<ssize_t>(sizeof failure)) failure = {Step::kExec, EIO};
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return cannot_start(step_text(failure.step, spec), failure.err);
}

}  // namespace

Spawner& real_spawner() {
  // Never destroyed: a runner in a static object may still reap or kill at exit.
  static RealSpawner* spawner = new RealSpawner();
  return *spawner;
}

}  // namespace farmhand::common
