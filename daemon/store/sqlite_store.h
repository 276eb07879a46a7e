// SqliteStore: the Store on one SQLite database file in WAL mode.
//
// Opening applies the numbered migrations in daemon/store/migrations/ that the
// file has not seen (PRAGMA user_version counts them). Durability follows the
// `synchronous` setting: with "full" (the default) a committed batch survives a
// power cut, at the price of one fsync per commit — which is why the broker
// commits once per event-loop turn, not once per change. With Flush::kByCaller,
// "full" runs SQLite at synchronous=NORMAL (commit() writes the WAL, the OS
// holds it) and flush() fdatasyncs the WAL: the same durability, with the
// caller choosing when to wait for the disk (the broker sends a turn's
// Assigns first, so the workers run them during the flush). Then, too, the WAL
// is checkpointed on a thread of its own (daemon/store/checkpointer.h), never
// inside commit().
// A file that is not a SQLite database, or a damaged one (SQLITE_NOTADB,
// SQLITE_CORRUPT, at open or on any later read), fails with kCorrupt and a reason
// naming the file and how to restore it. Opening reads only the header and schema:
// PRAGMA quick_check costs ~2 s on a million task rows, and the broker reads every
// job and task row at start anyway.
// Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/store/checkpointer.h"
#include "daemon/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace farmhand::daemon {

class SqliteStore : public Store {
 public:
  enum class Flush {
    kInCommit,  // with "full", commit() returns durable
    kByCaller,  // with "full", commit() returns written; flush() makes it durable
  };

  // synchronous: "full", "normal" or "off".
  [[nodiscard]] static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                                 const std::string& synchronous,
                                                                 Flush flush = Flush::kInCommit);
  ~SqliteStore() override;

  Result<void> commit(const Batch& batch) override;
  Result<void> load(const std::function<void(JobRow&&)>& on_job,
                    const std::function<void(TaskRow&&)>& on_task) override;
  Result<void> load_events(const std::function<void(EventRow&&)>& on_event) override;
  Result<void> load_limits(const std::function<void(LimitRow&&)>& on_limit) override;
  Result<void> load_blocks(const std::function<void(core::WorkerBlock&&)>& on_block) override;
  Result<void> load_worker_controls(
      const std::function<void(WorkerControlRow&&)>& on_control) override;
  Result<void> load_action_keys(const std::function<void(ActionKeyRow&&)>& on_key) override;
  Result<void> load_hook_deliveries(
      const std::function<void(core::HookDelivery&&)>& on_delivery,
      const std::function<void(const std::string& hook, uint64_t delivered)>& on_count) override;
  Result<std::vector<LogRow>> logs(core::JobId job, std::optional<core::TaskIndex> task) override;
  Result<void> load_job_usage(
      const std::function<void(core::JobId, const JobUsage&)>& on_job) override;
  Result<std::vector<LogRow>> last_attempt_stats(core::JobId job, core::TaskIndex first,
                                                 core::TaskIndex last) override;
  Result<std::vector<LogRow>> last_attempts(core::JobId job, core::TaskIndex first,
                                            core::TaskIndex last) override;
  Result<void> check_writable() override;

  Result<void> flush() override;

  // Checkpoints the background checkpointer completed (Flush::kByCaller); 0
  // otherwise (SQLite's automatic ones are not counted).
  uint64_t checkpoints_completed() const { return checkpointer_ ? checkpointer_->completed() : 0; }

  // An online, consistent copy of the database into `path` (SQLite backup API).
  [[nodiscard]] Result<void> backup_to(const std::string& path);

 private:
  SqliteStore(sqlite3* db, std::string path);
  Result<void> migrate();
  Result<void> prepare();
  // Reads where each running attempt's row is (running_rows_); a task with more
  // than one (none is ever written) keeps its latest, the others are deleted by
  // the next commit.
  Result<void> find_running_rows();
  Result<void> exec(const char* sql);
  // SQLITE_NOTADB and SQLITE_CORRUPT (any extended code) are damage, not I/O: the
  // error names the file and says how to restore it.
  Error error(const std::string& what) const;
  // Runs a read-only query, calling on_row for each row ("cannot read WHAT" on failure).
  Result<void> each_row(const char* sql, const char* what,
                        const std::function<void(sqlite3_stmt*)>& on_row);
  // The same with parameters: `bind` binds them before the first step.
  Result<void> each_row(const char* sql, const char* what,
                        const std::function<void(sqlite3_stmt*)>& bind,
                        const std::function<void(sqlite3_stmt*)>& on_row);
  // The last attempt of each task in [first, last] of a job: idx and attempt are
  // the first two columns of `sql` (?1 job, ?2 first, ?3 last); `fill` reads the rest.
  Result<std::vector<LogRow>> last_attempt_rows(
      const char* sql, const char* what, core::JobId job, core::TaskIndex first,
      core::TaskIndex last, const std::function<void(sqlite3_stmt*, LogRow&)>& fill);
  // Why the last write failed, with the file: "No space left on device (/s/farmhand.db)".
  Error write_failure() const;
  Error damaged(const std::string& detail) const;
  static bool is_damage(int rc);

  sqlite3* db_ = nullptr;
  std::string path_;
  std::string wal_path_;  // set when the caller flushes the WAL (Flush::kByCaller)
  int wal_fd_ = -1;
  std::unique_ptr<Checkpointer> checkpointer_;  // with Flush::kByCaller
  // Running attempts live in a table of their own (migration 0012): the rowid of
  // each task's row there, as committed. A commit changes it only once its
  // transaction is in.
  // (Hashed: a farm has tens of thousands of tasks running, and every task
  // change looks its task up; a tree's lookups were 4% of the broker's CPU.)
  using TaskKey = std::pair<core::JobId, core::TaskIndex>;

  struct TaskKeyHash {
    size_t operator()(const TaskKey& key) const {
      return std::hash<uint64_t>{}(key.first * 0x9E3779B97F4A7C15ull ^ key.second);
    }
  };

  using RunningRows = std::unordered_map<TaskKey, int64_t, TaskKeyHash>;
  RunningRows running_rows_;
  std::vector<int64_t> stale_running_rows_;
  // A commit's changes to running_rows_ (0: deleted), kept between commits for
  // its buckets.
  RunningRows running_in_batch_;
  sqlite3_stmt* insert_job_ = nullptr;
  sqlite3_stmt* update_job_ = nullptr;
  sqlite3_stmt* upsert_task_ = nullptr;
  sqlite3_stmt* insert_running_ = nullptr;
  sqlite3_stmt* delete_running_ = nullptr;
  sqlite3_stmt* insert_log_ = nullptr;
  sqlite3_stmt* insert_event_ = nullptr;
  sqlite3_stmt* set_finished_ = nullptr;
  sqlite3_stmt* set_started_ = nullptr;
  sqlite3_stmt* delete_job_ = nullptr;
  sqlite3_stmt* delete_tasks_ = nullptr;
  sqlite3_stmt* delete_logs_ = nullptr;
  sqlite3_stmt* delete_event_ = nullptr;
  sqlite3_stmt* upsert_limit_ = nullptr;
  sqlite3_stmt* upsert_control_ = nullptr;
  sqlite3_stmt* delete_control_ = nullptr;
  sqlite3_stmt* update_spec_ = nullptr;
  sqlite3_stmt* upsert_block_ = nullptr;
  sqlite3_stmt* delete_block_ = nullptr;
  sqlite3_stmt* delete_job_blocks_ = nullptr;
  sqlite3_stmt* insert_action_key_ = nullptr;
  sqlite3_stmt* forget_action_keys_ = nullptr;
  sqlite3_stmt* upsert_hook_delivery_ = nullptr;
  sqlite3_stmt* delete_hook_delivery_ = nullptr;
  sqlite3_stmt* count_hook_delivered_ = nullptr;
};

}  // namespace farmhand::daemon
