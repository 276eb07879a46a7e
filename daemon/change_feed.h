// ChangeFeed: what changed on the farm, for the HTTP front's live stream
// (/api/v1/stream, Server-Sent Events), published by the loop and read by HTTP
// threads.
//
// The loop notes what each committed batch touched (jobs, their tasks, publish
// events) and which workers joined or were lost, and, once the turn's flush
// has made it durable and the job board shows it, hands the notes over at most
// every kCoalesce. The feed's own thread makes the entries from them: at most
// one per job, sharing the board's card of the job (its summary without its
// spec: name, state, counts, progress, times; no params, labels or limits),
// with up to kMaxTaskIndices of the task indices that changed, and after them
// one `farm` entry counting what the publish changed (a page about the whole
// farm, workers or limits, reloads on it and reads no job's entries). A
// 100,000-task job that changes every turn is one small entry twice a second, not a flood,
// and the loop only appends ids (sorting and counting tens of thousands of
// task changes a publish, and making and freeing the entries, cost it a few
// percent of a busy farm's dispatch).
// Nothing is kept while no one streams (the cost of the feed is then a check
// per turn); a reader that comes later starts from the API.
// Entries carry increasing ids; a reader resumes after the id it last saw
// (Last-Event-ID) while the ring still holds it, else it is told to reload.
// Thread-safe: the loop notes and publishes, the feed's thread builds, any
// thread reads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "farmhand.pb.h"

#include "daemon/core/scheduler.h"
#include "daemon/job_board.h"
#include "daemon/store/store.h"

namespace farmhand::daemon {

class ChangeFeed {
 public:
  static constexpr std::chrono::milliseconds kCoalesce{500};
  static constexpr size_t kMaxTaskIndices = 100;
  static constexpr size_t kRingSize = 20'000;

  struct Entry {
    uint64_t id = 0;
    std::string kind;  // job | worker | publish | farm
    // kind job: the summary (absent when the job was forgotten), job_id always.
    uint64_t job_id = 0;
    std::shared_ptr<const wire::JobSummary> job;
    JobBoard::CardPtr card;       // instead of `job`, when the board made it (merged by readers)
    std::vector<uint32_t> tasks;  // changed task indices, at most kMaxTaskIndices
    uint64_t tasks_changed = 0;   // how many changed in all (kind farm: of every job)
    uint64_t jobs_changed = 0;    // kind farm: how many jobs the publish changed
    // The job was made, changed state (started, paused, resumed, cancelled,
    // finished, reopened) or was forgotten since the last publish: a reader of
    // a few jobs' changes gets these of every job (a list moves on them).
    bool moved = false;
    // kind worker: its name and what happened (joined, left, lost: REASON).
    // kind publish: the event id.
    std::string name;
    std::string what;
    // The entry as a reader sends it, made once by the first reader that
    // needs it (every stream sends the same bytes).
    mutable std::once_flag text_once;
    mutable std::string text;
    // The same without the task indices (a reader that asked for none).
    mutable std::once_flag brief_once;
    mutable std::string brief;
    // Another job's move, for a reader of a few jobs (no progress, no tasks).
    mutable std::once_flag move_once;
    mutable std::string move;
  };

  using EntryPtr = std::shared_ptr<const Entry>;

  ChangeFeed() = default;
  ~ChangeFeed();
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // ---- the loop
  // What a committed batch changed.
  void note(const Batch& batch);
  void note_worker(const std::string& name, const std::string& what);
  // After the flush: hands what was noted to the feed's thread, once
  // kCoalesce has passed since the last time and the board has published
  // every change noted (a job's entry shares the board's card of it; every
  // entry's state is durable). A disabled board shows nothing: the changes
  // are dropped as if unwatched.
  void publish_if_due(std::chrono::steady_clock::time_point now, const JobBoard& board);
  bool nothing_noted() const;
  // When a publish waits for kCoalesce, its time (the loop wakes for it).
  std::optional<std::chrono::steady_clock::time_point> next_publish() const;

  // ---- readers
  // Starts streaming: entries after `last_id` (0: from now on). False when the
  // ring no longer holds what follows last_id (the reader must reload).
  bool subscribe(uint64_t last_id, uint64_t& from);
  void unsubscribe();
  // Entries with id > `after`, waiting until there are some or `until`.
  std::vector<EntryPtr> wait_after(uint64_t after, std::chrono::steady_clock::time_point until);
  // The same for a reader that wants only some entries: only those `wanted`
  // accepts are copied out (a page's reader wants a hundred of a publish's
  // thousands, and each copy held the lock the loop publishes under).
  // `after` moves past every entry looked at; `behind` is set when the ring no
  // longer held the entry right after it (the reader must reload).
  std::vector<EntryPtr> wait_after(uint64_t& after, std::chrono::steady_clock::time_point until,
                                   const std::function<bool(const Entry&)>& wanted, bool& behind);
  uint64_t last_id() const;
  // Waits until every publish handed over so far is entries (or gaps).
  void settle();
  // Wakes every waiting reader (shutdown); they then end their streams.
  void close();
  bool closed() const;

 private:
  // What the loop noted between two publishes, handed to the feed's thread.
  struct Notes {
    bool gap = false;                // changes went unnoted: an id is spent on them
    std::vector<core::JobId> moved;  // jobs moved (see Entry::moved; repeats too)
    std::vector<std::pair<core::JobId, core::TaskIndex>> tasks;  // task changes (repeats too)
    std::vector<std::pair<std::string, std::string>> workers;
    std::vector<std::string> publishes;
    std::shared_ptr<const JobBoard::Snapshot> cards;  // the board as of the publish

    bool empty() const {
      return moved.empty() && tasks.empty() && workers.empty() && publishes.empty();
    }
  };

  void build_loop();
  std::vector<std::shared_ptr<Entry>> build(Notes& notes) const;

  // Loop-only.
  Notes notes_;
  std::chrono::steady_clock::time_point last_publish_{};
  // Changes not noted because nobody watched (note() then costs nothing): the
  // next publish spends an id on them, so a reader who came since finds a gap.
  bool unnoted_ = false;

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // readers: entries came, or the feed closed
  std::condition_variable handed_;   // the feed's thread: notes came, or the feed closed
  std::condition_variable settled_;  // settle(): everything handed over is built
  std::deque<Notes> pending_;        // handed over, not yet built
  bool building_ = false;
  std::deque<EntryPtr> ring_;
  uint64_t next_id_ = 1;
  int subscribers_ = 0;           // under mutex_
  std::atomic<int> watchers_{0};  // the same, read by note() without the lock
  bool closed_ = false;
  std::thread builder_;  // started by the first publish handed over
};

}  // namespace farmhand::daemon
