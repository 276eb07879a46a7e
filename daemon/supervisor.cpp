#include "daemon/supervisor.h"

#include <string>
#include <thread>

#include <signal.h>
#include <sys/wait.h>

#include "common/logging.h"

namespace farmhand::daemon {

namespace {

// A worker that lived this long before dying is not crash-looping: restart at once.
constexpr auto kHealthyRun = std::chrono::seconds(10);
constexpr auto kMaxRestartDelay = std::chrono::seconds(30);

}  // namespace

Supervisor::Supervisor(Options options, common::Spawner& spawner)
    : options_(std::move(options)), spawner_(spawner) {
  for (int i = 1; i <= options_.count; ++i) {
    children_.push_back(Child{"local-" + std::to_string(i)});
  }
}

Supervisor::~Supervisor() {
  if (!stopped_) stop(std::chrono::seconds(2));
}

Result<pid_t> Supervisor::spawn(const Child& child) {
  common::SpawnSpec spec;
  spec.argv = {options_.worker_binary,
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
    spec.argv.push_back("--work-dir");
    spec.argv.push_back(options_.state_dir + "/workers/" + child.name);
  }
  if (!options_.tags.empty()) {
    std::string tags;
    for (const auto& t : options_.tags) tags += (tags.empty() ? "" : ",") + t;
    spec.argv.push_back("--tags");
    spec.argv.push_back(tags);
  }
  if (options_.cores > 0) {
    spec.argv.push_back("--cores");
    spec.argv.push_back(std::to_string(options_.cores));
  }
  if (options_.memory > 0) {
    spec.argv.push_back("--memory");
    spec.argv.push_back(std::to_string(options_.memory));
  }
  spec.env = options_.env;
  // A broker killed with -9 takes its local workers with it.
  spec.parent_death_signal = SIGTERM;
  return spawner_.spawn(spec);
}

void Supervisor::maintain(Clock::time_point now) {
  if (stopped_) return;
  auto log = common::logger("supervisor");
  for (Child& child : children_) {
    if (child.pid > 0) {
      Result<std::optional<int>> reaped = spawner_.try_wait(child.pid);
      if (!reaped || !reaped->has_value()) continue;
      int status = **reaped;
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
      Result<pid_t> pid = spawn(child);
      child.pid = pid ? *pid : -1;
      child.started = now;
      if (!pid) {
        log->error("cannot start local worker worker={} binary={} reason=\"{}\"", child.name,
                   options_.worker_binary, pid.error().reason);
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
    if (child.pid > 0) spawner_.signal(child.pid, SIGTERM);
  }
  auto deadline = Clock::now() + grace;
  for (Child& child : children_) {
    while (child.pid > 0) {
      Result<std::optional<int>> reaped = spawner_.try_wait(child.pid);
      // Reaped, or not ours to wait for any more.
      if (!reaped || reaped->has_value()) {
        child.pid = -1;
        break;
      }
      if (Clock::now() >= deadline) {
        spawner_.signal(child.pid, SIGKILL);
        (void)spawner_.wait(child.pid);
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
