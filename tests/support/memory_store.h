// MemoryStore and FaultyStore: daemon::Store implementations for unit tests.
//
// MemoryStore keeps committed batches in maps, all or nothing per commit, as
// SQLite does; a commit is written (it survives the process), and durable
// (survives power_cut()) once flushed, as SQLite's WAL at synchronous=NORMAL.
// FaultyStore wraps any Store and fails commits (and the write probe) while
// told to, with the error a full disk gives, or flushes, with a failing
// disk's — the idea of LevelDB's fault_injection_test, on the store interface.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "daemon/store/store.h"

namespace farmhand::testing {

class MemoryStore final : public daemon::Store {
 public:
  Result<void> commit(const daemon::Batch& batch) override {
    State next = state_;
    for (const auto& job : batch.new_jobs) next.jobs[job.id] = job;
    for (const auto& change : batch.spec_changes) next.jobs[change.job].spec = change.spec;
    for (const auto& change : batch.blocks) {
      std::pair<core::JobId, std::string> key{change.block.job, change.block.worker};
      if (change.blocked) {
        next.blocks[key] = change.block;
      } else {
        next.blocks.erase(key);
      }
    }
    for (const auto& change : batch.job_changes) {
      auto& row = next.jobs[change.job];
      row.paused = change.paused;
      row.cancelled = change.cancelled;
    }
    for (const auto& change : batch.task_changes) {
      daemon::TaskRow row;
      row.job = change.job;
      row.task = change.task;
      row.state =
          change.state == core::TaskState::kBackoff ? core::TaskState::kQueued : change.state;
      row.attempts = change.attempts;
      row.budget_base = change.budget_base;
      row.lease = change.lease;
      row.worker = change.worker;
      row.error = change.error;
      next.tasks[{change.job, change.task}] = row;
    }
    for (const auto& log : batch.logs) next.logs[{log.job, log.task, log.attempt}] = log;
    for (const auto& event : batch.events) next.events.push_back(event);
    for (const auto& [job, unix_ms] : batch.finished) next.jobs[job].finished_unix_ms = unix_ms;
    for (const auto& [job, unix_ms] : batch.started) next.jobs[job].started_unix_ms = unix_ms;
    for (const auto& limit : batch.limits) next.limits[limit.name] = limit.capacity;
    for (const auto& control : batch.worker_controls) {
      if (control.control == core::WorkerControl::kEnabled) {
        next.controls.erase(control.name);
      } else {
        next.controls[control.name] = control;
      }
    }
    for (const auto& key : batch.action_keys) next.action_keys[key.key] = key;
    if (batch.forget_action_keys_before != 0) {
      std::erase_if(next.action_keys, [&](const auto& kv) {
        return kv.second.stored_unix_ms < batch.forget_action_keys_before;
      });
    }
    for (auto job : batch.forgotten_jobs) {
      next.jobs.erase(job);
      std::erase_if(next.logs, [&](const auto& kv) { return std::get<0>(kv.first) == job; });
      std::erase_if(next.tasks, [&](const auto& kv) { return kv.first.first == job; });
      std::erase_if(next.blocks, [&](const auto& kv) { return kv.first.first == job; });
    }
    ++commits_;
    state_ = std::move(next);
    return {};
  }

  Result<void> load(const std::function<void(daemon::JobRow&&)>& on_job,
                    const std::function<void(daemon::TaskRow&&)>& on_task) override {
    for (auto [id, row] : state_.jobs) on_job(std::move(row));
    for (auto [key, row] : state_.tasks) on_task(std::move(row));
    return {};
  }

  Result<void> load_events(const std::function<void(daemon::EventRow&&)>& on_event) override {
    for (auto row : state_.events) on_event(std::move(row));
    return {};
  }

  Result<void> load_limits(const std::function<void(daemon::LimitRow&&)>& on_limit) override {
    for (const auto& [name, capacity] : state_.limits) on_limit(daemon::LimitRow{name, capacity});
    return {};
  }

  Result<void> load_worker_controls(
      const std::function<void(daemon::WorkerControlRow&&)>& on_control) override {
    for (auto [name, row] : state_.controls) on_control(std::move(row));
    return {};
  }

  Result<void> load_blocks(const std::function<void(core::WorkerBlock&&)>& on_block) override {
    for (auto [key, block] : state_.blocks) on_block(std::move(block));
    return {};
  }

  Result<void> load_action_keys(
      const std::function<void(daemon::ActionKeyRow&&)>& on_key) override {
    for (auto [key, row] : state_.action_keys) on_key(std::move(row));
    return {};
  }

  size_t action_key_count() const { return state_.action_keys.size(); }

  Result<std::vector<daemon::LogRow>> logs(core::JobId job,
                                           std::optional<core::TaskIndex> task) override {
    std::vector<daemon::LogRow> out;
    for (const auto& [key, row] : state_.logs) {
      if (row.job == job && (!task || row.task == *task)) out.push_back(row);
    }
    return out;
  }

  Result<void> load_job_usage(
      const std::function<void(core::JobId, const daemon::JobUsage&)>& on_job) override {
    std::map<core::JobId, daemon::JobUsage> usage;
    for (const auto& [key, row] : state_.logs) {
      if (row.stats) usage[row.job].add(*row.stats);
    }
    for (const auto& [job, sum] : usage) on_job(job, sum);
    return {};
  }

  Result<std::vector<daemon::LogRow>> last_attempt_stats(core::JobId job, core::TaskIndex first,
                                                         core::TaskIndex last) override {
    std::map<core::TaskIndex, daemon::LogRow> latest;  // logs are in attempt order
    for (const auto& [key, row] : state_.logs) {
      if (row.job != job || row.task < first || row.task > last || !row.stats) continue;
      daemon::LogRow& out = latest[row.task];
      out = row;
      out.text.clear();
      out.error.clear();
    }
    std::vector<daemon::LogRow> out;
    for (auto& [task, row] : latest) out.push_back(std::move(row));
    return out;
  }

  Result<std::vector<daemon::LogRow>> last_attempts(core::JobId job, core::TaskIndex first,
                                                    core::TaskIndex last) override {
    std::map<core::TaskIndex, daemon::LogRow> latest;  // logs are in attempt order
    for (const auto& [key, row] : state_.logs) {
      if (row.job != job || row.task < first || row.task > last) continue;
      daemon::LogRow& out = latest[row.task];
      out = row;
      out.text.clear();
      out.error.clear();
      out.stats.reset();
    }
    std::vector<daemon::LogRow> out;
    for (auto& [task, row] : latest) out.push_back(std::move(row));
    return out;
  }

  Result<void> check_writable() override { return {}; }

  // What is "on disk".
  const daemon::JobRow* job(core::JobId id) const {
    auto it = state_.jobs.find(id);
    return it == state_.jobs.end() ? nullptr : &it->second;
  }

  const daemon::TaskRow* task(core::JobId job, core::TaskIndex task) const {
    auto it = state_.tasks.find({job, task});
    return it == state_.tasks.end() ? nullptr : &it->second;
  }

  size_t job_count() const { return state_.jobs.size(); }

  // Makes every commit so far durable, as an fdatasync of the WAL does.
  Result<void> flush() override {
    durable_ = state_;
    flushed_commits_ = commits_;
    return {};
  }

  // Whether every commit so far is durable.
  bool flushed() const { return flushed_commits_ == commits_; }

  // The host loses power: what was committed but not flushed is gone.
  void power_cut() { state_ = durable_; }

  size_t event_count() const { return state_.events.size(); }

  uint64_t commits() const { return commits_; }

 private:
  struct State {
    std::map<core::JobId, daemon::JobRow> jobs;
    std::map<std::pair<core::JobId, core::TaskIndex>, daemon::TaskRow> tasks;
    std::map<std::tuple<core::JobId, core::TaskIndex, uint32_t>, daemon::LogRow> logs;
    std::vector<daemon::EventRow> events;
    std::map<std::string, uint32_t> limits;
    std::map<std::string, daemon::WorkerControlRow> controls;
    std::map<std::pair<core::JobId, std::string>, core::WorkerBlock> blocks;
    std::map<std::string, daemon::ActionKeyRow> action_keys;
  };

  State state_;
  State durable_;
  uint64_t commits_ = 0;
  uint64_t flushed_commits_ = 0;
};

class FaultyStore final : public daemon::Store {
 public:
  explicit FaultyStore(daemon::Store& inner) : inner_(inner) {}

  // While set, every commit and write probe fails with `reason`.
  void fail_writes(std::string reason = "No space left on device (/state/farmhand.db)") {
    failing_ = std::move(reason);
  }

  void heal() {
    failing_.reset();
    failing_flush_.reset();
  }

  // While set, every flush fails with `reason`, after calling `first` (a test
  // cuts the power there: the host died while the disk was writing).
  void fail_flushes(std::string reason = "Input/output error (/state/farmhand.db-wal)",
                    std::function<void()> first = {}) {
    failing_flush_ = std::move(reason);
    before_flush_ = std::move(first);
  }

  Result<void> flush() override {
    if (failing_flush_) {
      if (before_flush_) before_flush_();
      return fail(ErrorCode::kIo, "state store flush failed: " + *failing_flush_);
    }
    return inner_.flush();
  }

  uint64_t failed_commits() const { return failed_; }

  Result<void> commit(const daemon::Batch& batch) override {
    if (failing_ && !batch.empty()) {
      ++failed_;
      return fail(ErrorCode::kIo, *failing_);
    }
    return inner_.commit(batch);
  }

  Result<void> load(const std::function<void(daemon::JobRow&&)>& on_job,
                    const std::function<void(daemon::TaskRow&&)>& on_task) override {
    return inner_.load(on_job, on_task);
  }

  Result<void> load_events(const std::function<void(daemon::EventRow&&)>& on_event) override {
    return inner_.load_events(on_event);
  }

  Result<void> load_limits(const std::function<void(daemon::LimitRow&&)>& on_limit) override {
    return inner_.load_limits(on_limit);
  }

  Result<void> load_worker_controls(
      const std::function<void(daemon::WorkerControlRow&&)>& on_control) override {
    return inner_.load_worker_controls(on_control);
  }

  Result<void> load_blocks(const std::function<void(core::WorkerBlock&&)>& on_block) override {
    return inner_.load_blocks(on_block);
  }

  Result<void> load_action_keys(
      const std::function<void(daemon::ActionKeyRow&&)>& on_key) override {
    return inner_.load_action_keys(on_key);
  }

  Result<std::vector<daemon::LogRow>> logs(core::JobId job,
                                           std::optional<core::TaskIndex> task) override {
    return inner_.logs(job, task);
  }

  Result<void> load_job_usage(
      const std::function<void(core::JobId, const daemon::JobUsage&)>& on_job) override {
    return inner_.load_job_usage(on_job);
  }

  Result<std::vector<daemon::LogRow>> last_attempt_stats(core::JobId job, core::TaskIndex first,
                                                         core::TaskIndex last) override {
    return inner_.last_attempt_stats(job, first, last);
  }

  Result<std::vector<daemon::LogRow>> last_attempts(core::JobId job, core::TaskIndex first,
                                                    core::TaskIndex last) override {
    return inner_.last_attempts(job, first, last);
  }

  Result<void> check_writable() override {
    if (failing_) return fail(ErrorCode::kIo, *failing_);
    return inner_.check_writable();
  }

 private:
  daemon::Store& inner_;
  std::optional<std::string> failing_;
  std::optional<std::string> failing_flush_;
  std::function<void()> before_flush_;
  uint64_t failed_ = 0;
};

}  // namespace farmhand::testing
