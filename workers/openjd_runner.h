// OpenJdRunner: runs Open Job Description tasks (kind=openjd) in sessions
// (openjd/session.h), as the specification's "How Jobs Are Run" describes.
//
// A task's job is made on the worker from the template and values it came
// with (openjd::create_job, as the broker made it); task ref.task of the job
// is task ref.task of its step. Tasks of one submission (its steps' jobs,
// told by OpenJdTask.session_key, made from the same source) share sessions: a
// session enters the job's environments once (environment templates first,
// then the template's jobEnvironments), then a step's, and runs tasks one at a
// time; a task of another step exits the last step's environments and enters
// its own. A worker running several tasks at once has as many sessions. A
// session left idle for `idle_session`
// is closed: its environments are exited in reverse order (onExit). So is one
// whose action failed, timed out or was cancelled (the specification makes
// such a session unusable), and every session when the runner is destroyed.
//
// Each session action runs on a thread of the runner (Session's calls block);
// the worker loop hears of ends and progress through wake_fd(). Lines an action
// prints go, redacted, to the task's log file, as a command's output does;
// `openjd_progress: N` becomes the task's progress (N of 100), `openjd_fail`
// its error.
//
// The farm's rules come with each task: the programs an action may start
// (checked as found on the action's PATH, against what the allowed names are on
// the worker's own PATH, so an environment cannot put its own `bash` first),
// root (refused unless allowed), and the path mapping rules.
//
// Not thread-safe: owned by the worker loop; its threads touch only what the
// runner's mutex guards.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "farmhand.pb.h"
#include <sys/types.h>

#include "common/result.h"
#include "common/spawner.h"
#include "workers/task_usage.h"

namespace farmhand::worker {

struct OpenJdOutcome {
  uint64_t id = 0;
  bool succeeded = false;
  std::optional<Error> error;
  std::chrono::milliseconds elapsed{0};
  // What the task's actions used (its environments' when it entered them, and
  // its onRun): CPU summed, the largest peak memory, how the last one ended.
  std::optional<TaskUsage> usage;
};

struct OpenJdProgress {
  uint64_t id = 0;
  uint64_t done = 0;  // percent
  uint64_t total = 100;
  std::string status{};  // the latest openjd_status line's message
};

class OpenJdRunner {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string work_dir;  // sessions are made under work_dir/openjd
    std::chrono::milliseconds idle_session{60'000};
    // Added to every action's environment (FARMHAND_WORKER, ...).
    std::map<std::string, std::string> env;
  };

  explicit OpenJdRunner(Options options);
  // Cancels what runs, exits every session's environments, joins its threads.
  ~OpenJdRunner();
  OpenJdRunner(const OpenJdRunner&) = delete;
  OpenJdRunner& operator=(const OpenJdRunner&) = delete;

  // Starts task `id` (the worker's run id) of `assign` (kind=openjd); its
  // output goes to `log_path`. An error (the job cannot be made here, the
  // worker runs as root) fails the task at once.
  [[nodiscard]] Result<void> start(uint64_t id, const wire::Assign& assign, Clock::time_point now,
                                   const std::string& log_path);
  // Cancels task `id` as its action's cancelation mode says; poll() reports it.
  void cancel(uint64_t id);
  // Tasks that ended; enforces the Assign's timeout; closes idle sessions.
  std::vector<OpenJdOutcome> poll(Clock::time_point now);
  std::vector<OpenJdProgress> take_progress();

  // Readable when a task ended or reported progress.
  int wake_fd() const { return wake_fd_; }

  std::optional<Clock::time_point> next_deadline() const;
  size_t running() const;
  // Whether `pgid` is the process group of an action a session runs (the
  // worker's stray reaper must leave those to their session).
  bool owns_group(pid_t pgid) const;
  // Sessions idle, and closed ones whose environments are still being exited.
  size_t idle_sessions() const;

  size_t closing_sessions() const { return closers_.size(); }

 private:
  struct Pooled;
  struct Running;
  class RecordingSpawner;

  void run_task(uint64_t id);  // on the task's thread
  void wake();
  void close_session(std::unique_ptr<Pooled> session);

  Options options_;
  int wake_fd_ = -1;
  std::unique_ptr<RecordingSpawner> spawner_;
  mutable std::mutex mutex_;
  std::map<uint64_t, std::unique_ptr<Running>> running_;
  // Idle sessions by session key.
  std::multimap<uint64_t, std::unique_ptr<Pooled>> idle_;
  std::vector<OpenJdOutcome> ended_;
  std::vector<OpenJdProgress> progress_;

  // Threads exiting closed sessions' environments; joined once done.
  struct Closer {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };

  std::vector<Closer> closers_;
};

}  // namespace farmhand::worker
