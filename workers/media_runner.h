// MediaRunner: runs media tasks in farmhand-media child processes, kept warm.
//
// Decoding untrusted images is isolated: every media task runs in a child
// (`farmhand-media serve`) under an address-space cap, talking to the worker
// over a socketpair on the child's fd 3 (length-prefixed media::Request and
// media::Event frames). OpenImageIO costs ~0.4 s to load, so children are
// reused between tasks and one is started ahead of need; a child that crashes,
// hangs past the task's timeout or is cancelled is killed and replaced.
//
// A crash becomes one classified line naming the file being decoded:
// "decoder crashed (SIGABRT) reading sh010.1012.exr". A timeout becomes
// "timed out after N s".
//
// Children are started, killed and reaped through a common::Spawner, by pid:
// it reaps only its own.
//
// A task's usage is the child's share while it ran the task: CPU time from
// /proc/PID/stat at start and at the end, peak RSS from VmHWM, reset at the
// task's start (clear_refs), so a warm child's earlier tasks do not count; for
// a child that died, from wait4 instead. A task that ends in a live child has
// no exit status; one whose child died has its signal or exit code. A child that cannot be started
// (a missing binary) fails the task at start() with the spawner's one-line reason.
//
// A task's log lines (media::Event.log) are appended to the log file given at
// start(), as a command's output is.
//
// Single-threaded, owned by the worker loop: it polls fds() for readability
// and calls poll() after each wake-up, SIGCHLD or deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.h"
#include "common/spawner.h"
#include "common/stream_framing.h"
#include "workers/task_usage.h"

namespace farmhand::worker {

struct MediaOutcome {
  uint64_t id = 0;
  bool succeeded = false;
  std::optional<Error> error;
  std::chrono::milliseconds elapsed{0};
  TaskUsage usage;
};

struct MediaProgress {
  uint64_t id = 0;
  uint64_t done = 0;
  uint64_t total = 0;
  std::string status{};  // none yet
};

class MediaRunner {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string binary;         // farmhand-media
    uint64_t memory_mb = 4096;  // address-space cap of each child
    size_t warm = 1;            // idle children kept ready
  };

  // `spawner` must outlive the runner.
  explicit MediaRunner(Options options, common::Spawner& spawner = common::real_spawner());
  ~MediaRunner();  // kills every child

  MediaRunner(const MediaRunner&) = delete;
  MediaRunner& operator=(const MediaRunner&) = delete;

  // Starts a child ahead of the first task (it takes ~0.4 s to load its libraries).
  void warm_up();

  // Sends a serialized media::Request (its id is set here) to an idle child.
  // The lines the child logs for the task (what it read and wrote, timings)
  // go to `log_path` (created or truncated) when it is not empty.
  [[nodiscard]] Result<void> start(uint64_t id, const std::string& request,
                                   std::chrono::seconds timeout, Clock::time_point now,
                                   const std::string& log_path = "");

  // Kills the child running `id`; poll() reports it as cancelled.
  void cancel(uint64_t id);

  // Reads events, reaps dead children, enforces timeouts; finished tasks.
  std::vector<MediaOutcome> poll(Clock::time_point now);

  std::vector<MediaProgress> take_progress();

  // Fds of busy children, to wait on for events.
  std::vector<int> fds() const;

  std::optional<Clock::time_point> next_deadline() const;

  size_t running() const;

  // Whether `pid` is one of its children (reap_strays).
  bool owns(pid_t pid) const;

 private:
  struct Child {
    pid_t pid = -1;
    int fd = -1;
    std::unique_ptr<common::FrameReader> reader;
    std::optional<uint64_t> task;  // running this task id
    std::string reading;           // the file it said it was decoding
    Clock::time_point started{};
    Clock::time_point deadline = Clock::time_point::max();
    std::optional<Error> kill_reason;  // set when we killed it on purpose
    CpuTimes cpu_at_start;             // its CPU time when the task started
    int log_fd = -1;                   // the task's log file, while it runs
  };

  Result<void> spawn();
  void finish(Child& child, bool succeeded, std::optional<Error> error, Clock::time_point now,
              TaskUsage usage);
  // The task's usage so far, read from the live child.
  TaskUsage live_usage(const Child& child) const;
  void bury(Child& child, const common::Reaped& reaped, Clock::time_point now);

  // Appends to the task's log file, if it has one.
  void write_log(Child& child, const std::string& text);
  static void close_log(Child& child);

  // Kills and reaps the child (blocking: it dies of SIGKILL).
  void kill_and_reap(Child& child);

  Options options_;
  common::Spawner& spawner_;
  std::vector<std::unique_ptr<Child>> children_;
  std::vector<MediaOutcome> outcomes_;
  std::vector<MediaProgress> progress_;
};

}  // namespace farmhand::worker
