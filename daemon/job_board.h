// JobBoard: every job's summary as of the last flush, published by the loop
// for the HTTP front's threads, which filter, sort and page it without asking
// the loop (GET /api/v1/jobs). A monitor listing 10,000 jobs costs the loop
// nothing but keeping the board: the summaries of the jobs a turn changed,
// rebuilt at most every kInterval.
//
// A snapshot is immutable and shared: a reader holds it as long as it likes
// while the loop publishes the next one. Summaries of unchanged jobs are
// shared between snapshots, so a publish costs the changed jobs and one copy
// of the index (a pointer per job).
//
// Thread-safe: the loop writes (enable, note, rebuild, publish_if_due), any
// thread reads (snapshot, query).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "farmhand.pb.h"

#include "common/result.h"
#include "daemon/core/scheduler.h"
#include "daemon/farm.h"
#include "daemon/store/store.h"

namespace farmhand::daemon {

struct Farm;

class JobBoard {
 public:
  // The live stream's interval too: its entries wait for the board anyway,
  // and a busy farm's every 250 ms cost the loop about 1% of its dispatch.
  static constexpr std::chrono::milliseconds kInterval{500};

  // One job: what changes only with its spec (shared by every card of the job
  // until then) and what moves as it runs (a few numbers: a card costs the
  // loop little). Its whole summary, and that as the API's JSON, are made once
  // by the first reader that needs them.
  struct Card {
    uint64_t job_id = 0;  // fixed->id(), kept here: lookups touch no summary
    std::shared_ptr<const wire::JobSummary> fixed;
    JobMoving moving;

    uint64_t id() const { return job_id; }

    const wire::JobSummary& summary() const;

    // Made by the first reader that needs it: a card is made for every changed
    // job, every publish, and most are never read whole.
    mutable std::once_flag summary_once;
    mutable std::unique_ptr<wire::JobSummary> whole;
    mutable std::once_flag json_once;
    mutable std::string json;
  };

  using CardPtr = std::shared_ptr<const Card>;

  // Cards by id, in chunks of ids (id / kChunk): a publish makes again only
  // the chunks whose jobs changed and shares the others.
  static constexpr uint64_t kChunk = 256;
  using Chunk = std::vector<CardPtr>;  // by id, ascending

  struct Snapshot {
    std::vector<std::pair<uint64_t, std::shared_ptr<const Chunk>>> chunks;  // by chunk number
    int64_t as_of_unix_ms = 0;  // when the loop published it
    size_t jobs = 0;
  };

  // ---- the loop
  // Off until enabled (no HTTP front: nothing is kept).
  void enable() { enabled_ = true; }

  bool enabled() const { return enabled_; }

  // Whether the last snapshot holds every change noted (nothing waits).
  bool current() const { return enabled_ && !rebuild_ && dirty_.empty(); }

  // The jobs a committed batch changed.
  void note(const Batch& batch);

  // Memory was restored from the store: every card is made again.
  void rebuild() { rebuild_ = true; }

  // After the flush (memory is durable), before the turn's replies leave:
  // publishes what changed when few jobs did (so a client that reads after a
  // write sees it), else once kInterval has passed since the last time.
  static constexpr size_t kFewJobs = 16;
  void publish_if_due(const Farm& farm, std::chrono::steady_clock::time_point now, int64_t unix_ms);

  // When a publish waits for kInterval, its time (the loop wakes for it).
  std::optional<std::chrono::steady_clock::time_point> next_publish() const;

  // ---- readers
  std::shared_ptr<const Snapshot> snapshot() const;

  // A page of jobs. `sort`: id, submitted, priority, state, progress, name,
  // project, user or finished, '-' first for descending (default "-id": the
  // newest first). `cursor`: empty, or the next_cursor of the page before.
  struct Query {
    wire::ListRequest filter;  // state, user, project, labels, name_contains, since
    std::string sort;
    std::string cursor;
    uint64_t offset = 0;  // used only without a cursor
    uint32_t limit = 100;
  };

  struct Page {
    std::vector<CardPtr> jobs;
    uint64_t matched = 0;
    std::string next_cursor;  // empty: this is the last page
    int64_t as_of_unix_ms = 0;
  };

  // Whether a card's job is one a list with `filter` shows (`needle`: its
  // text, lower-cased): the jobs API and the live stream match alike.
  static bool matches(const wire::ListRequest& filter, const std::string& needle, const Card& card);

  static Result<Page> query(const Snapshot& snapshot, const Query& query);
  // One job's card; null when the snapshot has none.
  static CardPtr find(const Snapshot& snapshot, core::JobId id);

  // Many jobs' cards, asked for in ascending id order: one pass over the
  // snapshot (a search per job chased ten card pointers each, and the feed
  // asks for thousands every publish).
  class Walk {
   public:
    explicit Walk(const Snapshot& snapshot) : snapshot_(snapshot) {}

    CardPtr find(core::JobId id);  // ids ascending from call to call

   private:
    const Snapshot& snapshot_;
    size_t chunk_ = 0;
    size_t card_ = 0;
  };

 private:
  // Loop-only.
  bool enabled_ = false;
  bool rebuild_ = true;
  std::vector<core::JobId> dirty_;
  std::vector<core::JobId> refixed_;  // of those, jobs whose spec changed (or new)
  std::chrono::steady_clock::time_point last_publish_{};

  mutable std::mutex mutex_;
  std::shared_ptr<const Snapshot> current_ = std::make_shared<Snapshot>();
};

}  // namespace farmhand::daemon
