// FolderWatcher: watched folders (issue 5). Reports the sequences and single files that appear
// or change under configured folders once they have settled: no new or growing file in their
// group for the spec's `settle` time. The broker turns each report into a publish event.
//
// How it works. One inotify descriptor watches every folder of every spec (and their subfolders
// when recursive, including ones created later). An event on a file marks its group active:
// a group is the files of one folder that share a prefix and suffix around the frame number
// (sh010.1001.exr ... sh010.1100.exr), or one single file. A group is looked at again only when
// it has been quiet for `settle`: its folder is then listed with common::scan_directory (which
// does the grouping into sequences), the group's files are stat'ed, and each of its sequences is
// reported if it holds a frame not reported before or a file newer than the last report. So a
// quiet tree costs nothing per call, whatever its size, and a settling group costs one listing
// of its own folder plus one stat per file of the group.
//
// The contract is "no new or growing file for settle", nothing stronger: a renderer that holds
// a frame open without writing to it for longer than `settle` lets the sequence settle with that
// frame as it is on disk (inotify does not say whether an open file is open for writing). A later
// write to it makes the sequence active again, and it is reported again once settled.
//
// What is ignored: hidden names (".name"), temporary names (ending in ".tmp", ".part" or "~"),
// folders with such names, and, when a spec has `include` globs, files matching none of them.
// Renderers and our own converter write to a temporary name and then rename; the rename is the
// activity that counts. Symlinked subfolders are not followed (a root may be a symlink).
//
// Deleting files makes a group active (a delete-then-rewrite is not reported halfway), but a
// group that only lost files is not reported: a report means something new arrived.
//
// Reports after a restart: a new FolderWatcher remembers nothing, so everything found by the
// initial scan is reported once it settles; files older than `settle` (by mtime, against the
// wall clock) settle at once. The signature is stable for unchanged files, so the broker can
// drop what it already published.
//
// Errors: a spec whose folder is missing or unreadable fails create(). Later failures (a root
// deleted, a subfolder that cannot be watched: permission, the inotify watch limit) are logged
// on the "watcher" logger and retried every kRetryInterval; the watcher never throws or aborts
// on file system errors.
//
// Time: `now` is passed in (steady clock); only the initial scan's "older than settle" test
// reads the wall clock, to compare with file mtimes.
//
// Use from the event loop: poll fd() for reading with a timeout up to next_deadline(); call
// on_readable(now) when it is readable, and take_settled(now) every turn (it is cheap when
// nothing is due).
//
// Not thread-safe: the event loop owns it. Never blocks: the descriptor is non-blocking.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::daemon {

struct WatchSpec {
  std::string dir;        // absolute folder
  bool recursive = true;  // watch subfolders, including ones created later
  // Quiet time before a group counts as complete: longer than the slowest gap between two
  // frames of a render, or a half-rendered sequence is published.
  std::chrono::milliseconds settle{5000};
  std::vector<std::string> include;  // file name globs (fnmatch), e.g. "*.exr"; empty = all
};

struct SettledSequence {
  size_t watch = 0;     // index into the specs given to create()
  std::string pattern;  // "/pub/sh010/sh010_comp_v003.####.exr", or a single file's path
  std::string frames;   // frame set present on disk, "1001-1100"; "" for a single file
  uint64_t file_count = 0;
  uint64_t total_bytes = 0;
  // Describes the content: pattern, frames, file count, bytes and the newest mtime (ns). Equal
  // for unchanged files across restarts; different after a frame is added, grows or is
  // rewritten (even at the same size). Touching a file changes it too.
  std::string signature;

  bool operator==(const SettledSequence&) const = default;
};

class FolderWatcher {
 public:
  using Clock = std::chrono::steady_clock;

  // How often a folder that could not be watched (deleted root, watch limit, permission) is
  // tried again: often enough that a recreated folder is picked up quickly, rarely enough
  // that a missing one costs nothing.
  static constexpr std::chrono::seconds kRetryInterval{10};

  // Starts watching: adds the watches, then scans what is already there. Existing files count
  // as activity at `now`, except groups whose newest file is older than `settle`, which are
  // settled at once (the next take_settled reports them). Fails (one line naming the folder)
  // when a spec's folder is not absolute, missing or unreadable, or inotify cannot start.
  [[nodiscard]] static Result<std::unique_ptr<FolderWatcher>> create(std::vector<WatchSpec> specs,
                                                                     Clock::time_point now);

  ~FolderWatcher();

  FolderWatcher(const FolderWatcher&) = delete;
  FolderWatcher& operator=(const FolderWatcher&) = delete;

  // The inotify descriptor, for the event loop's poll: readable when events are pending.
  int fd() const { return fd_; }

  // Drains pending events without blocking. An event queue overflow triggers rescan(now).
  void on_readable(Clock::time_point now);

  // Re-lists every watched tree as if events had been lost: adds watches for new folders,
  // drops vanished ones, and makes every group active at `now`. Only groups whose content
  // differs from their last report are reported again. Called on IN_Q_OVERFLOW.
  void rescan(Clock::time_point now);

  // The sequences that have settled by `now` with content not reported before. Each settled
  // state is reported once; also retries failed watches that are due.
  std::vector<SettledSequence> take_settled(Clock::time_point now);

  // When take_settled may next have something to do (a group settling, a retry); nullopt when
  // nothing is pending. May be early, never late.
  std::optional<Clock::time_point> next_deadline() const;

  // Folders currently watched (for status and tests).
  size_t watched_folders() const { return dirs_.size(); }

 private:
  // What was last reported (or seen settled) for one sequence of a group.
  struct Reported {
    common::FrameSet frames;
    int64_t newest_mtime_ns = 0;
  };

  // Files in one folder that share a prefix and suffix, or one single file.
  struct Group {
    Clock::time_point active_at{};             // last event or scan that touched the group
    bool queued = false;                       // has an entry in queue_
    std::map<std::string, Reported> reported;  // by pattern string
  };

  struct Dir {
    std::string path;  // no trailing '/'
    size_t watch = 0;
    int wd = -1;
    std::unordered_map<std::string, Group> groups;  // by group key (see group_key in .cpp)
  };

  struct QueueEntry {
    Clock::time_point due;
    uint64_t dir = 0;
    std::string group;

    bool operator>(const QueueEntry& other) const { return due > other.due; }
  };

  struct Retry {
    size_t watch = 0;
    std::string path;
  };

  FolderWatcher(std::vector<WatchSpec> specs, int fd);

  // Watches `path` and, when recursive, the folders below it; then scans each one's files.
  // Groups found become active at `now`, or due at once when `settle_old` and their newest file
  // is older than settle. Fails only for `path` itself; subfolders that fail are retried.
  // `visited`, when given, receives every folder reached.
  [[nodiscard]] Result<void> add_tree(size_t watch, const std::string& path, Clock::time_point now,
                                      bool settle_old, std::vector<uint64_t>* visited);
  // Watches one folder, or returns the id it already has for this spec.
  [[nodiscard]] Result<uint64_t> add_dir(size_t watch, const std::string& path);
  void scan_dir(uint64_t id, Clock::time_point now, bool settle_old);
  void drop_dir(uint64_t id);
  void drop_tree(size_t watch, const std::string& path);
  void schedule_retry(size_t watch, const std::string& path, Clock::time_point now);
  void run_retries(Clock::time_point now);
  void handle_event(int wd, uint32_t mask, std::string_view name, Clock::time_point now);
  bool eligible(size_t watch, std::string_view name) const;
  void touch(uint64_t id, const std::string& key, Clock::time_point at);
  // Lists the folder once, stats the files of the groups `keys`, and appends what changed.
  void settle_groups(uint64_t id, const std::vector<std::string>& keys,
                     std::vector<SettledSequence>& out);

  std::vector<WatchSpec> specs_;
  int fd_ = -1;
  uint64_t next_dir_id_ = 1;
  std::unordered_map<uint64_t, Dir> dirs_;
  std::unordered_map<std::string, std::vector<uint64_t>> by_path_;  // several specs may overlap
  std::unordered_map<int, std::vector<uint64_t>> by_wd_;            // inotify shares the wd
  // Groups waiting to settle, earliest first. Entries go stale when a group is touched again
  // (it is re-queued at its new time when popped) or its folder is dropped (skipped).
  std::priority_queue<QueueEntry, std::vector<QueueEntry>, std::greater<>> queue_;
  std::vector<Retry> retries_;
  std::optional<Clock::time_point> retry_at_;
};

}  // namespace farmhand::daemon
