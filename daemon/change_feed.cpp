#include "daemon/change_feed.h"

#include <algorithm>

#include "daemon/farm.h"

namespace farmhand::daemon {

namespace {

// What a live view shows of a job and what changes while it runs; the rest
// (params, labels, limits, dependencies, usage) is one API read away. A
// stream of 2,000 running jobs must not be a stream of their whole specs.
void slim(wire::JobSummary& job) {
  job.clear_frames();
  job.clear_labels();
  job.clear_params();
  job.clear_after();
  job.clear_limits();
  job.clear_usage();
  job.clear_submitted_from();
  job.clear_submitted_key();
  job.clear_command_template();
}

}  // namespace

void ChangeFeed::note(const Batch& batch) {
  if (watchers_.load(std::memory_order_acquire) == 0) {
    unnoted_ = true;
    return;
  }
  // Appended as they come (a full farm notes thousands a turn); sorted and
  // counted once a publish.
  for (const JobRow& row : batch.new_jobs) moved_notes_.push_back(row.id);
  for (const auto& change : batch.job_changes) moved_notes_.push_back(change.job);
  for (const auto& [id, at] : batch.finished) moved_notes_.push_back(id);
  for (const auto& [id, at] : batch.started) moved_notes_.push_back(id);
  for (core::JobId id : batch.forgotten_jobs) moved_notes_.push_back(id);
  for (const auto& change : batch.task_changes) {
    TaskNotes& notes = task_notes_[change.job];
    ++notes.changed;
    if (notes.tasks.size() < 2 * kMaxTaskIndices) notes.tasks.push_back(change.task);
  }
  for (const EventRow& event : batch.events) publishes_.push_back(event.event_id);
}

void ChangeFeed::note_worker(const std::string& name, const std::string& what) {
  if (watchers_.load(std::memory_order_acquire) == 0) {
    unnoted_ = true;
    return;
  }
  workers_.emplace_back(name, what);
}

bool ChangeFeed::nothing_noted() const {
  return job_notes_.empty() && moved_notes_.empty() && task_notes_.empty() && workers_.empty() &&
         publishes_.empty() && !unnoted_;
}

std::optional<std::chrono::steady_clock::time_point> ChangeFeed::next_publish() const {
  if (nothing_noted()) {
    return std::nullopt;
  }
  return last_publish_ + kCoalesce;
}

void ChangeFeed::publish_if_due(const Farm& farm, std::chrono::steady_clock::time_point now,
                                const JobBoard* board) {
  if (nothing_noted()) return;
  if (now - last_publish_ < kCoalesce) return;
  const bool shared = board != nullptr && board->enabled();
  const bool jobs_noted = !job_notes_.empty() || !task_notes_.empty();
  if (shared && jobs_noted && !board->current()) return;  // its next publish is near
  last_publish_ = now;
  std::vector<std::shared_ptr<Entry>> entries;
  bool watched = false;
  {
    std::lock_guard lock(mutex_);
    watched = subscribers_ > 0;
    // Unwatched changes are dropped, but an id is spent on them: a reader that
    // resumes from before them (or subscribed since) finds a gap and reloads
    // instead of missing them.
    if (!watched || unnoted_) ++next_id_;
  }
  unnoted_ = false;
  if (watched) {
    // The jobs noted, each once, in id order; their task notes beside them.
    for (const auto& [job, notes] : task_notes_) job_notes_.push_back(job);
    std::sort(moved_notes_.begin(), moved_notes_.end());
    moved_notes_.erase(std::unique(moved_notes_.begin(), moved_notes_.end()), moved_notes_.end());
    job_notes_.insert(job_notes_.end(), moved_notes_.begin(), moved_notes_.end());
    std::sort(job_notes_.begin(), job_notes_.end());
    job_notes_.erase(std::unique(job_notes_.begin(), job_notes_.end()), job_notes_.end());
    entries.reserve(job_notes_.size() + workers_.size() + publishes_.size());
    const auto cards = shared ? board->snapshot() : nullptr;
    std::optional<JobBoard::Walk> walk;
    if (cards) walk.emplace(*cards);
    for (core::JobId id : job_notes_) {
      auto entry = std::make_shared<Entry>();
      entry->kind = "job";
      entry->job_id = id;
      entry->moved = std::binary_search(moved_notes_.begin(), moved_notes_.end(), id);
      if (cards) {
        // The board's summary, kept alive by the entry (the card it is in).
        entry->card = walk->find(id);
      } else if (farm.scheduler->job(id)) {
        auto summary = std::make_shared<wire::JobSummary>();
        fill_summary(farm, id, *summary);
        slim(*summary);
        entry->job = std::move(summary);
      }
      if (auto notes = task_notes_.find(id); notes != task_notes_.end()) {
        std::vector<uint32_t>& tasks = notes->second.tasks;
        std::sort(tasks.begin(), tasks.end());
        tasks.erase(std::unique(tasks.begin(), tasks.end()), tasks.end());
        if (tasks.size() > kMaxTaskIndices) tasks.resize(kMaxTaskIndices);
        entry->tasks = std::move(tasks);
        entry->tasks_changed = notes->second.changed;
      }
      entries.push_back(std::move(entry));
    }
    for (auto& [name, what] : workers_) {
      auto entry = std::make_shared<Entry>();
      entry->kind = "worker";
      entry->name = std::move(name);
      entry->what = std::move(what);
      entries.push_back(std::move(entry));
    }
    for (auto& event : publishes_) {
      auto entry = std::make_shared<Entry>();
      entry->kind = "publish";
      entry->name = std::move(event);
      entries.push_back(std::move(entry));
    }
  }
  job_notes_.clear();
  moved_notes_.clear();
  task_notes_.clear();
  workers_.clear();
  publishes_.clear();
  if (entries.empty()) return;
  std::vector<EntryPtr> retired;  // freed here, after the lock
  {
    std::lock_guard lock(mutex_);
    for (auto& entry : entries) {
      entry->id = next_id_++;
      ring_.push_back(std::move(entry));
    }
    while (ring_.size() > kRingSize) {
      retired_.push_back(std::move(ring_.front()));
      ring_.pop_front();
    }
    // Readers that stopped reading leave them to the loop, at most a ring's worth.
    if (retired_.size() > kRingSize) retired.swap(retired_);
  }
  changed_.notify_all();
}

bool ChangeFeed::subscribe(uint64_t last_id, uint64_t& from) {
  std::lock_guard lock(mutex_);
  ++subscribers_;
  watchers_.store(subscribers_, std::memory_order_release);
  const uint64_t newest = next_id_ - 1;
  if (last_id == 0 || last_id >= newest) {
    from = newest;
    return last_id <= newest;
  }
  // Resuming: the ring must still hold the entry right after last_id (an id
  // spent on unwatched changes has none).
  from = last_id;
  auto next = std::lower_bound(ring_.begin(), ring_.end(), last_id + 1,
                               [](const EntryPtr& entry, uint64_t id) { return entry->id < id; });
  return next != ring_.end() && (*next)->id == last_id + 1;
}

void ChangeFeed::unsubscribe() {
  std::lock_guard lock(mutex_);
  --subscribers_;
  watchers_.store(subscribers_, std::memory_order_release);
}

std::vector<ChangeFeed::EntryPtr> ChangeFeed::wait_after(
    uint64_t after, std::chrono::steady_clock::time_point until) {
  bool behind = false;
  return wait_after(
      after, until, [](const Entry&) { return true; }, behind);
}

std::vector<ChangeFeed::EntryPtr> ChangeFeed::wait_after(
    uint64_t& after, std::chrono::steady_clock::time_point until,
    const std::function<bool(const Entry&)>& wanted, bool& behind) {
  std::vector<EntryPtr> retired;  // freed on this thread once the lock is let go
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, until, [&] { return closed_ || next_id_ - 1 > after; });
  auto next = std::lower_bound(ring_.begin(), ring_.end(), after + 1,
                               [](const EntryPtr& entry, uint64_t id) { return entry->id < id; });
  behind = after != 0 && next != ring_.end() && (*next)->id > after + 1;
  std::vector<EntryPtr> out;
  for (; next != ring_.end(); ++next) {
    if (wanted(**next)) out.push_back(*next);
    after = (*next)->id;
  }
  retired.swap(retired_);
  lock.unlock();
  return out;
}

uint64_t ChangeFeed::last_id() const {
  std::lock_guard lock(mutex_);
  return next_id_ - 1;
}

bool ChangeFeed::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

void ChangeFeed::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

}  // namespace farmhand::daemon
