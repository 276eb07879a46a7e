#include "daemon/job_board.h"

#include <algorithm>
#include <charconv>
#include <variant>

#include <fmt/format.h>

#include "daemon/farm.h"

namespace farmhand::daemon {

void JobBoard::note(const Batch& batch) {
  if (!enabled_ || rebuild_) return;
  // A turn changes many tasks of few jobs, and in runs: a repeat is not kept.
  auto mark = [this](core::JobId id) {
    if (dirty_.empty() || dirty_.back() != id) dirty_.push_back(id);
  };
  for (const JobRow& row : batch.new_jobs) {
    mark(row.id);
    refixed_.push_back(row.id);
  }
  for (const auto& change : batch.job_changes) mark(change.job);
  for (const auto& [id, at] : batch.finished) mark(id);
  for (const auto& [id, at] : batch.started) mark(id);
  for (core::JobId id : batch.forgotten_jobs) mark(id);
  for (const auto& change : batch.task_changes) mark(change.job);
  for (const auto& change : batch.spec_changes) {
    mark(change.job);
    refixed_.push_back(change.job);
  }
  for (const LogRow& log : batch.logs) mark(log.job);  // usage
}

const wire::JobSummary& JobBoard::Card::summary() const {
  std::call_once(summary_once, [this] {
    whole = std::make_unique<wire::JobSummary>(*fixed);
    apply_moving(moving, *whole);
  });
  return *whole;
}

namespace {

// A job's card; `before`'s fixed part is kept unless `refix`.
JobBoard::CardPtr make_card(const Farm& farm, core::JobId id, const JobBoard::Card* before,
                            bool refix) {
  auto moving = job_moving(farm, id);
  if (!moving) return nullptr;
  auto card = std::make_shared<JobBoard::Card>();
  card->job_id = id;
  card->moving = *moving;
  if (before != nullptr && !refix) {
    card->fixed = before->fixed;
  } else {
    auto fixed = std::make_shared<wire::JobSummary>();
    fill_summary_fixed(farm, id, *fixed);
    card->fixed = std::move(fixed);
  }
  return card;
}

}  // namespace

std::optional<std::chrono::steady_clock::time_point> JobBoard::next_publish() const {
  if (!enabled_ || (!rebuild_ && dirty_.empty())) return std::nullopt;
  return last_publish_ + kInterval;
}

void JobBoard::publish_if_due(const Farm& farm, std::chrono::steady_clock::time_point now,
                              int64_t unix_ms) {
  if (!enabled_ || (!rebuild_ && dirty_.empty())) return;
  const bool due = rebuild_ || now - last_publish_ >= kInterval;
  // Not due, and surely more than a few jobs (repeats included): waits, without
  // sorting what a busy farm notes every turn.
  if (!due && dirty_.size() > 4 * kFewJobs) return;
  std::sort(dirty_.begin(), dirty_.end());
  dirty_.erase(std::unique(dirty_.begin(), dirty_.end()), dirty_.end());
  if (!due && dirty_.size() > kFewJobs) return;
  std::sort(refixed_.begin(), refixed_.end());
  last_publish_ = now;
  auto next = std::make_shared<Snapshot>();
  next->as_of_unix_ms = unix_ms;
  if (rebuild_) {
    rebuild_ = false;
    dirty_.clear();
    refixed_.clear();
    std::shared_ptr<Chunk> chunk;
    for (core::JobId id : farm.scheduler->job_ids()) {
      auto card = make_card(farm, id, nullptr, true);
      if (!card) continue;
      if (next->chunks.empty() || next->chunks.back().first != id / kChunk) {
        chunk = std::make_shared<Chunk>();
        next->chunks.emplace_back(id / kChunk, chunk);
      }
      chunk->push_back(std::move(card));
      ++next->jobs;
    }
  } else {
    std::shared_ptr<const Snapshot> before = snapshot();
    next->chunks.reserve(before->chunks.size() + 1);
    auto old = before->chunks.begin();
    for (auto dirty = dirty_.begin(); dirty != dirty_.end();) {
      const uint64_t number = *dirty / kChunk;
      while (old != before->chunks.end() && old->first < number) next->chunks.push_back(*old++);
      // This chunk again: its old cards merged with the changed jobs' new ones.
      auto chunk = std::make_shared<Chunk>();
      const Chunk empty;
      const Chunk& was =
          old != before->chunks.end() && old->first == number ? *(old++)->second : empty;
      auto card = was.begin();
      for (; dirty != dirty_.end() && *dirty / kChunk == number; ++dirty) {
        while (card != was.end() && (*card)->id() < *dirty) chunk->push_back(*card++);
        const Card* last = nullptr;  // the job's card until now
        if (card != was.end() && (*card)->id() == *dirty) last = (card++)->get();
        const bool refix = std::binary_search(refixed_.begin(), refixed_.end(), *dirty);
        if (auto made = make_card(farm, *dirty, last, refix)) chunk->push_back(std::move(made));
      }
      chunk->insert(chunk->end(), card, was.end());
      if (!chunk->empty()) next->chunks.emplace_back(number, std::move(chunk));
    }
    next->chunks.insert(next->chunks.end(), old, before->chunks.end());
    for (const auto& [number, chunk] : next->chunks) next->jobs += chunk->size();
    dirty_.clear();
    refixed_.clear();
  }
  std::lock_guard lock(mutex_);
  current_ = std::move(next);
}

std::shared_ptr<const JobBoard::Snapshot> JobBoard::snapshot() const {
  std::lock_guard lock(mutex_);
  return current_;
}

// ------------------------------------------------------------------ queries

JobBoard::CardPtr JobBoard::find(const Snapshot& snapshot, core::JobId id) {
  auto chunk =
      std::lower_bound(snapshot.chunks.begin(), snapshot.chunks.end(), id / kChunk,
                       [](const auto& entry, uint64_t number) { return entry.first < number; });
  if (chunk == snapshot.chunks.end() || chunk->first != id / kChunk) return nullptr;
  auto card = std::lower_bound(chunk->second->begin(), chunk->second->end(), id,
                               [](const CardPtr& c, core::JobId want) { return c->id() < want; });
  return card != chunk->second->end() && (*card)->id() == id ? *card : nullptr;
}

JobBoard::CardPtr JobBoard::Walk::find(core::JobId id) {
  const auto& chunks = snapshot_.chunks;
  while (chunk_ < chunks.size() && chunks[chunk_].first < id / kChunk) {
    ++chunk_;
    card_ = 0;
  }
  if (chunk_ == chunks.size() || chunks[chunk_].first != id / kChunk) return nullptr;
  const Chunk& chunk = *chunks[chunk_].second;
  while (card_ < chunk.size() && chunk[card_]->id() < id) ++card_;
  return card_ < chunk.size() && chunk[card_]->id() == id ? chunk[card_] : nullptr;
}

namespace {

// A sort key's value for one job: a number or text, with the id to break ties
// so that every job has its own place and a cursor names one.
using SortValue = std::variant<int64_t, double, std::string>;

struct SortKey {
  std::string name;
  bool descending = false;
  SortValue (*value)(const wire::JobSummary&) = nullptr;
};

double progress(const wire::JobSummary& job) {
  if (job.frames_total() > 0) {
    return static_cast<double>(job.frames_succeeded()) / static_cast<double>(job.frames_total());
  }
  if (job.task_count() == 0) return 0;
  auto it = job.counts().find("succeeded");
  const uint64_t done = it == job.counts().end() ? 0 : it->second;
  return static_cast<double>(done) / static_cast<double>(job.task_count());
}

Result<SortKey> parse_sort(const std::string& text) {
  SortKey key;
  std::string name = text.empty() ? "-id" : text;
  if (name[0] == '-') {
    key.descending = true;
    name.erase(0, 1);
  }
  key.name = name;
  if (name == "id") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return static_cast<int64_t>(j.id()); };
  } else if (name == "submitted") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return j.submitted_unix_ms(); };
  } else if (name == "finished") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return j.finished_unix_ms(); };
  } else if (name == "priority") {
    key.value = [](const wire::JobSummary& j) -> SortValue {
      return static_cast<int64_t>(j.priority());
    };
  } else if (name == "state") {
    key.value = [](const wire::JobSummary& j) -> SortValue {
      return static_cast<int64_t>(j.state());
    };
  } else if (name == "progress") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return progress(j); };
  } else if (name == "name") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return j.name(); };
  } else if (name == "project") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return j.project(); };
  } else if (name == "user") {
    key.value = [](const wire::JobSummary& j) -> SortValue { return j.submitted_by(); };
  } else {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown sort '{}': id, submitted, finished, priority, state, "
                            "progress, name, project or user, '-' first for descending",
                            text));
  }
  return key;
}

// A cursor: the sort it was made for, and the last job's value and id, as
// "SORT~TYPE~VALUE~ID" in hex (opaque to clients, safe in a URL).
std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> unhex(const std::string& text) {
  if (text.size() % 2 != 0 || text.size() > 8192) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, value, 16);
    if (ec != std::errc{} || end != text.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<char>(value));
  }
  return out;
}

std::string make_cursor(const SortKey& key, const wire::JobSummary& last) {
  const SortValue value = key.value(last);
  std::string text;
  if (const auto* n = std::get_if<int64_t>(&value)) text = fmt::format("i~{}", *n);
  if (const auto* d = std::get_if<double>(&value)) text = fmt::format("d~{:.17g}", *d);
  if (const auto* s = std::get_if<std::string>(&value)) text = "s~" + *s;
  return hex(fmt::format("{}{}~{}~{}", key.descending ? "-" : "", key.name, last.id(), text));
}

struct Position {
  SortValue value;
  uint64_t id = 0;
};

Result<Position> read_cursor(const SortKey& key, const std::string& cursor) {
  auto refused = [] {
    return fail(ErrorCode::kInvalidArgument,
                "cursor not understood: pass next_cursor from the page before, with the same sort");
  };
  auto text = unhex(cursor);
  if (!text) return refused();
  // SORT~ID~TYPE~VALUE (the value last: text may hold '~').
  const std::string sort = (key.descending ? "-" : "") + key.name;
  if (text->rfind(sort + "~", 0) != 0) return refused();
  std::string rest = text->substr(sort.size() + 1);
  const size_t tilde = rest.find('~');
  if (tilde == std::string::npos || rest.size() < tilde + 3 || rest[tilde + 2] != '~') {
    return refused();
  }
  Position at;
  auto [id_end, id_ec] = std::from_chars(rest.data(), rest.data() + tilde, at.id);
  if (id_ec != std::errc{} || id_end != rest.data() + tilde) return refused();
  const char type = rest[tilde + 1];
  const std::string value = rest.substr(tilde + 3);
  if (type == 's') {
    at.value = value;
  } else if (type == 'i') {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc{} || end != value.data() + value.size()) return refused();
    at.value = n;
  } else if (type == 'd') {
    double d = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
    if (ec != std::errc{} || end != value.data() + value.size()) return refused();
    at.value = d;
  } else {
    return refused();
  }
  if (at.value.index() != key.value(wire::JobSummary{}).index()) return refused();
  return at;
}

}  // namespace

bool JobBoard::matches(const wire::ListRequest& filter, const std::string& needle,
                       const Card& card) {
  const wire::JobSummary& job = *card.fixed;  // whole summaries only for a page
  return job_matches(filter, needle,
                     {card.moving.state, job.submitted_by(), job.project(), job.submitted_unix_ms(),
                      job.labels(), job.name()});
}

Result<JobBoard::Page> JobBoard::query(const Snapshot& snapshot, const Query& query) {
  auto key = parse_sort(query.sort);
  if (!key) return fail(key.error());
  std::optional<Position> after;
  if (!query.cursor.empty()) {
    auto at = read_cursor(*key, query.cursor);
    if (!at) return fail(at.error());
    after = std::move(*at);
  }
  const std::string needle = ascii_lower(query.filter.name_contains());
  std::vector<const CardPtr*> matches;
  for (const auto& [number, chunk] : snapshot.chunks) {
    for (const CardPtr& card : *chunk) {
      if (JobBoard::matches(query.filter, needle, *card)) matches.push_back(&card);
    }
  }
  // (value, id) ascending, or both descending.
  auto before = [&](const SortValue& a_value, uint64_t a_id, const SortValue& b_value,
                    uint64_t b_id) {
    if (a_value != b_value) return key->descending ? b_value < a_value : a_value < b_value;
    return key->descending ? b_id < a_id : a_id < b_id;
  };
  if (key->name == "id") {
    if (key->descending) std::reverse(matches.begin(), matches.end());
  } else {
    std::vector<std::pair<SortValue, const CardPtr*>> keyed;
    keyed.reserve(matches.size());
    for (const CardPtr* card : matches) keyed.emplace_back(key->value((*card)->summary()), card);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
      return before(a.first, (*a.second)->id(), b.first, (*b.second)->id());
    });
    for (size_t i = 0; i < keyed.size(); ++i) matches[i] = keyed[i].second;
  }
  Page page;
  page.matched = matches.size();
  page.as_of_unix_ms = snapshot.as_of_unix_ms;
  size_t first = 0;
  if (after) {
    // The first job after the cursor's place (a job that moved since is
    // where it is now; none is shown twice on pages that follow each other).
    first = static_cast<size_t>(
        std::partition_point(matches.begin(), matches.end(),
                             [&](const CardPtr* card) {
                               const wire::JobSummary& job = (*card)->summary();
                               return !before(after->value, after->id, key->value(job), job.id());
                             }) -
        matches.begin());
  } else {
    first = static_cast<size_t>(std::min<uint64_t>(query.offset, matches.size()));
  }
  const uint32_t limit = query.limit == 0 ? 100 : query.limit;
  for (size_t i = first; i < matches.size() && page.jobs.size() < limit; ++i) {
    page.jobs.push_back(*matches[i]);
  }
  if (!page.jobs.empty() && first + page.jobs.size() < matches.size()) {
    page.next_cursor = make_cursor(*key, page.jobs.back()->summary());
  }
  return page;
}

}  // namespace farmhand::daemon
