#include "daemon/change_feed.h"

#include <algorithm>

#include <sys/resource.h>
#include <unistd.h>

#include "common/signal_free_thread.h"

namespace farmhand::daemon {

namespace {
constexpr int kBuilderNice = 10;
}  // namespace

ChangeFeed::~ChangeFeed() {
  close();
  if (builder_.joinable()) builder_.join();
}

void ChangeFeed::note(const Batch& batch) {
  if (watchers_.load(std::memory_order_acquire) == 0) {
    unnoted_ = true;
    return;
  }
  // Appended as they come (a full farm notes thousands a turn); sorted and
  // counted by the feed's thread.
  for (const JobRow& row : batch.new_jobs) notes_.moved.push_back(row.id);
  for (const auto& change : batch.job_changes) notes_.moved.push_back(change.job);
  for (const auto& [id, at] : batch.finished) notes_.moved.push_back(id);
  for (const auto& [id, at] : batch.started) notes_.moved.push_back(id);
  for (core::JobId id : batch.forgotten_jobs) notes_.moved.push_back(id);
  for (const auto& change : batch.task_changes) notes_.tasks.emplace_back(change.job, change.task);
  for (const EventRow& event : batch.events) notes_.publishes.push_back(event.event_id);
}

void ChangeFeed::note_worker(const std::string& name, const std::string& what) {
  if (watchers_.load(std::memory_order_acquire) == 0) {
    unnoted_ = true;
    return;
  }
  notes_.workers.emplace_back(name, what);
}

bool ChangeFeed::nothing_noted() const {
  return notes_.empty() && !unnoted_;
}

std::optional<std::chrono::steady_clock::time_point> ChangeFeed::next_publish() const {
  if (nothing_noted()) return std::nullopt;
  return last_publish_ + kCoalesce;
}

void ChangeFeed::publish_if_due(std::chrono::steady_clock::time_point now, const JobBoard& board) {
  if (nothing_noted()) return;
  if (now - last_publish_ < kCoalesce) return;
  const bool jobs_noted = !notes_.moved.empty() || !notes_.tasks.empty();
  if (board.enabled() && jobs_noted && !board.current()) return;  // its next publish is near
  last_publish_ = now;
  Notes notes = std::move(notes_);
  notes_ = Notes{};
  notes.gap = unnoted_;
  unnoted_ = false;
  {
    std::lock_guard lock(mutex_);
    // Unwatched changes are dropped, but an id is spent on them: a reader that
    // resumes from before them (or subscribed since) finds a gap and reloads
    // instead of missing them. Without a board there is no summary to show.
    if (subscribers_ == 0 || !board.enabled()) {
      notes = Notes{};
      notes.gap = true;
    } else if (jobs_noted) {
      notes.cards = board.snapshot();
    }
    pending_.push_back(std::move(notes));
    if (!builder_.joinable()) builder_ = std::thread([this] { build_loop(); });
  }
  handed_.notify_one();
}

std::vector<std::shared_ptr<ChangeFeed::Entry>> ChangeFeed::build(Notes& notes) const {
  std::vector<std::shared_ptr<Entry>> entries;
  // The jobs noted, each once, in id order: their task changes beside them.
  std::sort(notes.moved.begin(), notes.moved.end());
  notes.moved.erase(std::unique(notes.moved.begin(), notes.moved.end()), notes.moved.end());
  std::sort(notes.tasks.begin(), notes.tasks.end());
  std::vector<core::JobId> jobs = notes.moved;
  for (size_t at = 0; at < notes.tasks.size(); ++at) {
    if (at == 0 || notes.tasks[at].first != notes.tasks[at - 1].first) {
      jobs.push_back(notes.tasks[at].first);
    }
  }
  std::sort(jobs.begin(), jobs.end());
  jobs.erase(std::unique(jobs.begin(), jobs.end()), jobs.end());
  entries.reserve(jobs.size() + 1 + notes.workers.size() + notes.publishes.size());
  std::optional<JobBoard::Walk> walk;
  if (notes.cards) walk.emplace(*notes.cards);
  auto task = notes.tasks.begin();
  for (core::JobId id : jobs) {
    auto entry = std::make_shared<Entry>();
    entry->kind = "job";
    entry->job_id = id;
    entry->moved = std::binary_search(notes.moved.begin(), notes.moved.end(), id);
    // The board's summary, kept alive by the entry (the card it is in); none
    // once the job is forgotten.
    if (walk) entry->card = walk->find(id);
    while (task != notes.tasks.end() && task->first < id) ++task;
    for (; task != notes.tasks.end() && task->first == id; ++task) {
      ++entry->tasks_changed;
      if (entry->tasks.size() < kMaxTaskIndices &&
          (entry->tasks.empty() || entry->tasks.back() != task->second)) {
        entry->tasks.push_back(task->second);
      }
    }
    entries.push_back(std::move(entry));
  }
  // After the jobs' entries: a reader that reloads on it reads them all.
  if (!jobs.empty()) {
    auto entry = std::make_shared<Entry>();
    entry->kind = "farm";
    entry->jobs_changed = jobs.size();
    entry->tasks_changed = notes.tasks.size();
    entries.push_back(std::move(entry));
  }
  for (auto& [name, what] : notes.workers) {
    auto entry = std::make_shared<Entry>();
    entry->kind = "worker";
    entry->name = std::move(name);
    entry->what = std::move(what);
    entries.push_back(std::move(entry));
  }
  for (auto& event : notes.publishes) {
    auto entry = std::make_shared<Entry>();
    entry->kind = "publish";
    entry->name = std::move(event);
    entries.push_back(std::move(entry));
  }
  return entries;
}

void ChangeFeed::build_loop() {
  // Below the loop, like the HTTP front's threads: when both want a core the
  // loop's dispatch goes first (this thread sorts and allocates thousands of
  // entries a publish on a busy farm).
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kBuilderNice);
  common::name_this_thread("fh-feed");
  std::unique_lock lock(mutex_);
  for (;;) {
    handed_.wait(lock, [this] { return closed_ || !pending_.empty(); });
    if (pending_.empty()) return;  // closed
    Notes notes = std::move(pending_.front());
    pending_.pop_front();
    building_ = true;
    lock.unlock();
    auto entries = build(notes);
    const bool gap = notes.gap;
    notes = Notes{};                // the board's cards it held, freed here
    std::vector<EntryPtr> retired;  // freed on this thread, after the lock
    lock.lock();
    if (gap) ++next_id_;
    for (auto& entry : entries) {
      entry->id = next_id_++;
      ring_.push_back(std::move(entry));
    }
    while (ring_.size() > kRingSize) {
      retired.push_back(std::move(ring_.front()));
      ring_.pop_front();
    }
    lock.unlock();
    changed_.notify_all();
    retired.clear();
    lock.lock();
    building_ = false;
    settled_.notify_all();
  }
}

void ChangeFeed::settle() {
  std::unique_lock lock(mutex_);
  settled_.wait(lock, [this] { return closed_ || (pending_.empty() && !building_); });
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
  handed_.notify_all();
  settled_.notify_all();
}

}  // namespace farmhand::daemon
