#include "daemon/supervisor.h"

#include <string>
#include <string_view>
#include <thread>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/logging.h"

namespace farmhand::daemon {

namespace {

// A worker that lived this long before dying is not crash-looping: restart at once.
constexpr auto kHealthyRun = std::chrono::seconds(10);
constexpr auto kMaxRestartDelay = std::chrono::seconds(30);

}  // namespace

Supervisor::Supervisor(Options options) : options_(std::move(options)) {
  for (int i = 1; i <= options_.count; ++i) {
    children_.push_back(Child{"local-" + std::to_string(i)});
  }
}

Supervisor::~Supervisor() {
  if (!stopped_) stop(std::chrono::seconds(2));
}

pid_t Supervisor::spawn(const Child& child) {
  std::vector<std::string> args = {options_.worker_binary,
                                   "--broker",
                                   options_.broker_endpoint,
                                   "--name",
                                   child.name,
                                   "--slots",
                                   std::to_string(options_.slots),
                                   "--interactive-slots",
                                   std::to_string(options_.interactive_slots),
                                   "--log-level",
                                   options_.log_level};
  if (!options_.state_dir.empty()) {
    args.push_back("--work-dir");
    args.push_back(options_.state_dir + "/workers/" + child.name);
  }
  if (!options_.tags.empty()) {
    std::string tags;
    for (const auto& t : options_.tags) tags += (tags.empty() ? "" : ",") + t;
    args.push_back("--tags");
    args.push_back(tags);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment is built before fork: the broker has threads, so the child
  // may only make async-signal-safe calls until it execs.
  std::vector<std::string> extra = options_.env;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    bool replaced = false;
    for (const std::string& x : extra) {
      const auto eq = x.find('=');
      replaced =
          replaced || (entry.substr(0, entry.find('=')) == std::string_view(x).substr(0, eq));
    }
    if (!replaced) envp.push_back(*e);
  }
  for (auto& x : extra) envp.push_back(x.data());
  envp.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // The broker blocks signals for its signalfd; the worker must start clean.
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

void Supervisor::maintain(Clock::time_point now) {
  if (stopped_) return;
  auto log = common::logger("supervisor");
  for (Child& child : children_) {
    if (child.pid > 0) {
      int status = 0;
      pid_t r = waitpid(child.pid, &status, WNOHANG);
      if (r != child.pid) continue;
      std::string how = WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                            : "exit code " + std::to_string(WEXITSTATUS(status));
      child.pid = -1;
      child.failures = now - child.started > kHealthyRun ? 0 : child.failures + 1;
      auto delay = std::min<Clock::duration>(
          kMaxRestartDelay,
          std::chrono::milliseconds(child.failures == 0 ? 0 : 250 << std::min(child.failures, 8)));
      child.restart_at = now + delay;
      log->warn("local worker died worker={} reason=\"{}\" restart_in_ms={}", child.name, how,
                std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
    }
    if (child.pid <= 0 && now >= child.restart_at) {
      child.pid = spawn(child);
      child.started = now;
      if (child.pid < 0) {
        log->error("cannot start local worker worker={} binary={}", child.name,
                   options_.worker_binary);
        child.failures++;
        child.restart_at = now + kMaxRestartDelay;
      } else {
        log->info("local worker started worker={} pid={}", child.name, child.pid);
      }
    }
  }
}

std::optional<Supervisor::Clock::time_point> Supervisor::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const Child& child : children_) {
    if (child.pid > 0) continue;
    if (!next || child.restart_at < *next) next = child.restart_at;
  }
  return next;
}

void Supervisor::stop(std::chrono::milliseconds grace) {
  stopped_ = true;
  for (const Child& child : children_) {
    if (child.pid > 0) kill(child.pid, SIGTERM);
  }
  auto deadline = Clock::now() + grace;
  for (Child& child : children_) {
    while (child.pid > 0) {
      if (waitpid(child.pid, nullptr, WNOHANG) == child.pid) {
        child.pid = -1;
        break;
      }
      if (Clock::now() >= deadline) {
        kill(child.pid, SIGKILL);
        waitpid(child.pid, nullptr, 0);
        child.pid = -1;
        break;
      }
      // Children exit within milliseconds of SIGTERM; there is no fd to wait on here.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

int Supervisor::alive() const {
  int n = 0;
  for (const Child& child : children_) n += child.pid > 0;
  return n;
}

}  // namespace farmhand::daemon
