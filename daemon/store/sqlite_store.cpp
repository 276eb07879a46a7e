#include "daemon/store/sqlite_store.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/logging.h"
#include "daemon/store/migrations.h"
#include "daemon/store/task_state_code.h"

namespace farmhand::daemon {

namespace {

// Frees a statement on every path out of a query.
struct Finalizer {
  sqlite3_stmt* stmt;

  ~Finalizer() { sqlite3_finalize(stmt); }
};

std::string column_text(sqlite3_stmt* stmt, int col) {
  const auto* text = sqlite3_column_text(stmt, col);
  return text ? std::string(reinterpret_cast<const char*>(text),
                            static_cast<size_t>(sqlite3_column_bytes(stmt, col)))
              : std::string();
}

void bind_text(sqlite3_stmt* stmt, int col, const std::string& text) {
  sqlite3_bind_text(stmt, col, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

}  // namespace

SqliteStore::SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

SqliteStore::~SqliteStore() {
  // Every statement, however it was prepared: one left unfinalized would make
  // the close a deferred "zombie" one that never checkpoints the WAL.
  while (sqlite3_stmt* stmt = sqlite3_next_stmt(db_, nullptr)) sqlite3_finalize(stmt);
  // Its connection first: the last one to close checkpoints the WAL and removes it.
  checkpointer_.reset();
  sqlite3_close_v2(db_);
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

Result<void> SqliteStore::flush() {
  if (wal_path_.empty()) return {};
  auto failed = [](const std::string& path, int err = errno) {
    return fail(ErrorCode::kIo,
                fmt::format("state store flush failed: {} ({})", std::strerror(err), path));
  };
  // The WAL is opened by path, and again when the path names a new file (SQLite
  // makes it anew only when its last connection closes).
  struct stat at_path = {};
  if (::stat(wal_path_.c_str(), &at_path) != 0) {
    if (errno == ENOENT) return {};  // no WAL: every commit is in the database file
    return failed(wal_path_);
  }
  struct stat ours = {};
  if (wal_fd_ < 0 || ::fstat(wal_fd_, &ours) != 0 || ours.st_ino != at_path.st_ino ||
      ours.st_dev != at_path.st_dev) {
    if (wal_fd_ >= 0) {
      if (::fdatasync(wal_fd_) != 0) return failed(wal_path_);
      ::close(wal_fd_);
    }
    wal_fd_ = ::open(wal_path_.c_str(), O_RDWR | O_CLOEXEC);
    if (wal_fd_ < 0) return failed(wal_path_);
    // A new file is durable once its directory entry is.
    const std::string dir = std::filesystem::path(wal_path_).parent_path().string();
    int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return failed(dir);
    const int err = ::fsync(dir_fd) == 0 ? 0 : errno;
    ::close(dir_fd);
    if (err != 0) return failed(dir, err);
  }
  if (::fdatasync(wal_fd_) != 0) return failed(wal_path_);
  return {};
}

Error SqliteStore::error(const std::string& what) const {
  if (is_damage(sqlite3_errcode(db_))) return damaged(sqlite3_errmsg(db_));
  return Error{ErrorCode::kIo, fmt::format("{}: {}", what, sqlite3_errmsg(db_))};
}

Error SqliteStore::write_failure() const {
  // The operating system's reason when there is one ("No space left on device"),
  // else SQLite's, and always the file: the line a user acts on.
  const int code = sqlite3_extended_errcode(db_) & 0xff;
  const int sys = sqlite3_system_errno(db_);
  std::string why = sqlite3_errmsg(db_);
  if (code == SQLITE_FULL) {
    why = std::strerror(sys != 0 ? sys : ENOSPC);
  } else if ((code == SQLITE_IOERR || code == SQLITE_CANTOPEN || code == SQLITE_READONLY) &&
             sys != 0) {
    why = std::strerror(sys);
  }
  const char* file = sqlite3_db_filename(db_, "main");
  return Error{ErrorCode::kIo, fmt::format("{} ({})", why, file && *file ? file : "state store")};
}

Result<void> SqliteStore::check_writable() {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &stmt, nullptr) != SQLITE_OK) {
    return fail(write_failure());
  }
  int version = 0;
  {
    Finalizer finalizer{stmt};
    if (sqlite3_step(stmt) != SQLITE_ROW) return fail(write_failure());
    version = sqlite3_column_int(stmt, 0);
  }
  // Rewriting the schema cookie is a real write: a WAL frame and its fsync.
  auto sql = fmt::format("BEGIN IMMEDIATE; PRAGMA user_version={}; COMMIT;", version);
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = write_failure();
    (void)sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return fail(std::move(e));
  }
  return {};
}

Error SqliteStore::damaged(const std::string& detail) const {
  return Error{ErrorCode::kCorrupt,
               fmt::format("state file {} is damaged ({}); stop farmhandd and restore a backup "
                           "made by `farmhand admin backup` in its place (see deploy/README.md, "
                           "Backup and restore)",
                           path_, detail)};
}

bool SqliteStore::is_damage(int rc) {
  return (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT;
}

Result<void> SqliteStore::exec(const char* sql) {
  char* message = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string reason = message ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    if (is_damage(rc)) return fail(damaged(reason));
    return fail(ErrorCode::kIo, fmt::format("state store: {}", reason));
  }
  return {};
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       const std::string& synchronous,
                                                       Flush flush) {
  // SQLite's allocation statistics take a global mutex on every malloc; the
  // broker reads none of them. (Only possible before SQLite is first used in
  // the process; later it is refused, harmlessly.)
  static const int no_memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)no_memstatus;
  sqlite3* db = nullptr;
  // One thread uses the connection (the class is not thread-safe), so SQLite
  // need not lock it on every call: NOMUTEX.
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, path));
  if (rc != SQLITE_OK) {
    return fail(store->error(fmt::format("cannot open state store {}", path)));
  }
  sqlite3_busy_timeout(db, 5000);
  std::string sync = synchronous == "off" ? "OFF" : synchronous == "normal" ? "NORMAL" : "FULL";
  auto pragmas = fmt::format(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA foreign_keys=OFF;"
      "PRAGMA temp_store=MEMORY;",
      sync);
  if (auto ok = store->exec(pragmas.c_str()); !ok) return fail(ok.error());
  if (auto ok = store->migrate(); !ok) return fail(ok.error());
  if (auto ok = store->prepare(); !ok) return fail(ok.error());
  if (auto ok = store->find_running_rows(); !ok) return fail(ok.error());
  if (sync == "FULL" && flush == Flush::kByCaller) {
    // From here on the WAL is written at commit and fsynced by the caller: the
    // same durability, without the event loop waiting for the disk. (In WAL
    // mode NORMAL still syncs the WAL before each checkpoint, and the database
    // after.) The migrations above ran under FULL, so a new database is on disk
    // before the state dir's marker says one exists.
    if (auto ok = store->exec("PRAGMA synchronous=NORMAL"); !ok) return fail(ok.error());
    store->wal_path_ = path + "-wal";
    // The WAL is checkpointed by a thread of its own: a hook of our own
    // replaces SQLite's automatic checkpoint inside the commit.
    store->checkpointer_ = std::make_unique<Checkpointer>(path);
    sqlite3_wal_hook(
        db,
        [](void* checkpointer, sqlite3*, const char*, int wal_frames) {
          static_cast<Checkpointer*>(checkpointer)->request(wal_frames);
          return SQLITE_OK;
        },
        store->checkpointer_.get());
  }
  return store;
}

Result<void> SqliteStore::migrate() {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &stmt, nullptr) != SQLITE_OK) {
    return fail(error("state store"));
  }
  Finalizer finalizer{stmt};
  int version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  constexpr int kKnown = static_cast<int>(std::size(migrations::kAll));
  if (version > kKnown) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("state store is at schema version {}, newer than this farmhandd ({})",
                            version, kKnown));
  }
  for (int v = version; v < kKnown; ++v) {
    std::string sql =
        fmt::format("BEGIN; {} PRAGMA user_version={}; COMMIT;", migrations::kAll[v], v + 1);
    if (auto ok = exec(sql.c_str()); !ok) {
      (void)exec("ROLLBACK");
      if (ok.error().code == ErrorCode::kCorrupt) return ok;
      return fail(ErrorCode::kIo, fmt::format("migration {} failed: {}", v + 1, ok.error().reason));
    }
  }
  return {};
}

Result<void> SqliteStore::prepare() {
  struct {
    sqlite3_stmt** stmt;
    const char* sql;
  } statements[] = {
      {&insert_job_,
       "INSERT INTO jobs (id, spec, submitted_unix_ms, idempotency_key, paused, cancelled) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
      {&update_job_, "UPDATE jobs SET paused = ?2, cancelled = ?3 WHERE id = ?1"},
      {&upsert_task_,
       "INSERT INTO tasks (job_id, idx, state, attempts, lease, worker, error, budget_base) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (job_id, idx) DO UPDATE SET "
       "state = excluded.state, attempts = excluded.attempts, lease = excluded.lease, "
       "worker = excluded.worker, error = excluded.error, budget_base = excluded.budget_base"},
      {&insert_running_,
       "INSERT INTO running_attempts (job_id, idx, attempts, budget_base, lease, worker, error) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
      {&delete_running_, "DELETE FROM running_attempts WHERE rowid = ?1"},
      {&insert_log_,
       "INSERT OR REPLACE INTO task_logs (job_id, idx, attempt, worker, error, text, wall_s, "
       "cpu_user_s, cpu_system_s, peak_rss_bytes, exit_code, exit_signal, started_unix_ms, "
       "finished_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"},
      {&insert_event_, "INSERT INTO events (event_id, received_unix_ms, info) VALUES (?1, ?2, ?3)"},
      {&set_finished_, "UPDATE jobs SET finished_unix_ms = ?2 WHERE id = ?1"},
      {&set_started_, "UPDATE jobs SET started_unix_ms = ?2 WHERE id = ?1"},
      {&delete_job_, "DELETE FROM jobs WHERE id = ?1"},
      {&delete_tasks_, "DELETE FROM tasks WHERE job_id = ?1"},
      {&delete_logs_, "DELETE FROM task_logs WHERE job_id = ?1"},
      {&delete_event_, "DELETE FROM events WHERE event_id = ?1"},
      {&upsert_limit_,
       "INSERT INTO limits (name, capacity) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET "
       "capacity = excluded.capacity"},
      {&upsert_control_,
       "INSERT INTO worker_controls (name, state, reason) VALUES (?1, ?2, ?3) ON CONFLICT (name) "
       "DO UPDATE SET state = excluded.state, reason = excluded.reason"},
      {&delete_control_, "DELETE FROM worker_controls WHERE name = ?1"},
      {&update_spec_, "UPDATE jobs SET spec = ?2 WHERE id = ?1"},
      {&upsert_block_,
       "INSERT INTO job_blocks (job_id, worker, failures, reason) VALUES (?1, ?2, ?3, ?4) "
       "ON CONFLICT (job_id, worker) DO UPDATE SET failures = excluded.failures, "
       "reason = excluded.reason"},
      {&delete_block_, "DELETE FROM job_blocks WHERE job_id = ?1 AND worker = ?2"},
      {&delete_job_blocks_, "DELETE FROM job_blocks WHERE job_id = ?1"},
      {&insert_action_key_,
       "INSERT OR REPLACE INTO action_keys (key, fingerprint, reply, stored_unix_ms) "
       "VALUES (?1, ?2, ?3, ?4)"},
      {&forget_action_keys_, "DELETE FROM action_keys WHERE stored_unix_ms < ?1"},
      {&upsert_hook_delivery_,
       "INSERT OR REPLACE INTO hook_outbox (delivery_id, seq, hook, event, job_id, body, "
       "created_unix_ms, attempts, next_unix_ms, last_error, failed, failed_unix_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
      {&delete_hook_delivery_, "DELETE FROM hook_outbox WHERE delivery_id = ?1"},
      {&count_hook_delivered_,
       "INSERT INTO hook_counts (hook, delivered) VALUES (?1, 1) ON CONFLICT (hook) DO UPDATE "
       "SET delivered = delivered + 1"},
  };

  for (auto& s : statements) {
    if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.stmt, nullptr) !=
        SQLITE_OK) {
      return fail(error("state store prepare"));
    }
  }
  return {};
}

Result<void> SqliteStore::commit(const Batch& batch) {
  if (batch.empty()) return {};
  if (auto ok = exec("BEGIN IMMEDIATE"); !ok) return ok;
  // Why a statement failed is read before the reset, which may forget the OS error.
  Error failure;
  auto run = [this, &failure](sqlite3_stmt* stmt) {
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) failure = write_failure();
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE;
  };
  auto rollback = [this, &failure](const std::string&) {
    (void)exec("ROLLBACK");
    return fail(std::move(failure));
  };
  for (const JobRow& job : batch.new_jobs) {
    sqlite3_bind_int64(insert_job_, 1, static_cast<sqlite3_int64>(job.id));
    sqlite3_bind_blob(insert_job_, 2, job.spec.data(), static_cast<int>(job.spec.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert_job_, 3, job.submitted_unix_ms);
    if (job.idempotency_key.empty()) {
      sqlite3_bind_null(insert_job_, 4);
    } else {
      bind_text(insert_job_, 4, job.idempotency_key);
    }
    sqlite3_bind_int(insert_job_, 5, job.paused);
    sqlite3_bind_int(insert_job_, 6, job.cancelled);
    if (!run(insert_job_)) return rollback(fmt::format("cannot store job {}", job.id));
  }
  for (const SpecChange& change : batch.spec_changes) {
    sqlite3_bind_int64(update_spec_, 1, static_cast<sqlite3_int64>(change.job));
    sqlite3_bind_blob(update_spec_, 2, change.spec.data(), static_cast<int>(change.spec.size()),
                      SQLITE_TRANSIENT);
    if (!run(update_spec_)) return rollback(fmt::format("cannot update job {}", change.job));
  }
  for (const core::BlockChange& change : batch.blocks) {
    sqlite3_stmt* stmt = change.blocked ? upsert_block_ : delete_block_;
    sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(change.block.job));
    bind_text(stmt, 2, change.block.worker);
    if (change.blocked) {
      sqlite3_bind_int64(stmt, 3, change.block.failures);
      bind_text(stmt, 4, change.block.reason);
    }
    if (!run(stmt))
      return rollback(fmt::format("cannot store a block of job {}", change.block.job));
  }
  for (const core::JobChange& change : batch.job_changes) {
    sqlite3_bind_int64(update_job_, 1, static_cast<sqlite3_int64>(change.job));
    sqlite3_bind_int(update_job_, 2, change.paused);
    sqlite3_bind_int(update_job_, 3, change.cancelled);
    if (!run(update_job_)) return rollback(fmt::format("cannot update job {}", change.job));
  }
  // Where each task's running attempt is as this batch goes (0: none); applied
  // to running_rows_ once the transaction is in.
  RunningRows& running = running_in_batch_;
  running.clear();
  auto running_row = [&](const TaskKey& key) -> int64_t {
    if (auto it = running.find(key); it != running.end()) return it->second;
    auto it = running_rows_.find(key);
    return it == running_rows_.end() ? 0 : it->second;
  };
  auto delete_running = [&](const TaskKey& key) {
    const int64_t row = running_row(key);
    if (row == 0) return true;
    sqlite3_bind_int64(delete_running_, 1, row);
    if (!run(delete_running_)) return false;
    running[key] = 0;
    return true;
  };
  for (int64_t row : stale_running_rows_) {
    sqlite3_bind_int64(delete_running_, 1, row);
    if (!run(delete_running_)) return rollback("cannot delete a running attempt");
  }
  for (const core::TaskChange& change : batch.task_changes) {
    const TaskKey key{change.job, change.task};
    // Whatever the change, the attempt that ran before it is over.
    if (!delete_running(key)) {
      return rollback(fmt::format("cannot store task {} of job {}", change.task, change.job));
    }
    if (change.state == core::TaskState::kRunning) {
      sqlite3_bind_int64(insert_running_, 1, static_cast<sqlite3_int64>(change.job));
      sqlite3_bind_int64(insert_running_, 2, change.task);
      sqlite3_bind_int(insert_running_, 3, static_cast<int>(change.attempts));
      sqlite3_bind_int64(insert_running_, 4, change.budget_base);
      sqlite3_bind_int64(insert_running_, 5, static_cast<sqlite3_int64>(change.lease));
      bind_text(insert_running_, 6, change.worker);
      bind_text(insert_running_, 7, change.error);
      if (!run(insert_running_)) {
        return rollback(fmt::format("cannot store task {} of job {}", change.task, change.job));
      }
      running[key] = sqlite3_last_insert_rowid(db_);
      continue;
    }
    sqlite3_bind_int64(upsert_task_, 1, static_cast<sqlite3_int64>(change.job));
    sqlite3_bind_int64(upsert_task_, 2, change.task);
    sqlite3_bind_int(upsert_task_, 3, task_state_code(change.state));
    sqlite3_bind_int(upsert_task_, 4, static_cast<int>(change.attempts));
    sqlite3_bind_int64(upsert_task_, 5, static_cast<sqlite3_int64>(change.lease));
    bind_text(upsert_task_, 6, change.worker);
    bind_text(upsert_task_, 7, change.error);
    sqlite3_bind_int64(upsert_task_, 8, change.budget_base);
    if (!run(upsert_task_)) {
      return rollback(fmt::format("cannot store task {} of job {}", change.task, change.job));
    }
  }
  for (const LogRow& log : batch.logs) {
    sqlite3_bind_int64(insert_log_, 1, static_cast<sqlite3_int64>(log.job));
    sqlite3_bind_int64(insert_log_, 2, log.task);
    sqlite3_bind_int(insert_log_, 3, static_cast<int>(log.attempt));
    bind_text(insert_log_, 4, log.worker);
    bind_text(insert_log_, 5, log.error);
    bind_text(insert_log_, 6, log.text);
    if (log.stats) {  // unbound parameters are NULL: unknown
      const AttemptStats& stats = *log.stats;
      sqlite3_bind_double(insert_log_, 7, stats.wall_s);
      sqlite3_bind_double(insert_log_, 8, stats.cpu_user_s);
      sqlite3_bind_double(insert_log_, 9, stats.cpu_system_s);
      sqlite3_bind_int64(insert_log_, 10, static_cast<sqlite3_int64>(stats.peak_rss_bytes));
      if (stats.exit_code) sqlite3_bind_int(insert_log_, 11, *stats.exit_code);
      bind_text(insert_log_, 12, stats.exit_signal);
    }
    if (log.started_unix_ms != 0) sqlite3_bind_int64(insert_log_, 13, log.started_unix_ms);
    if (log.finished_unix_ms != 0) sqlite3_bind_int64(insert_log_, 14, log.finished_unix_ms);
    if (!run(insert_log_)) return rollback("cannot store task log");
  }
  for (const EventRow& event : batch.events) {
    bind_text(insert_event_, 1, event.event_id);
    sqlite3_bind_int64(insert_event_, 2, event.received_unix_ms);
    sqlite3_bind_blob(insert_event_, 3, event.info.data(), static_cast<int>(event.info.size()),
                      SQLITE_TRANSIENT);
    if (!run(insert_event_)) return rollback("cannot store publish event");
  }
  for (const auto& [job, unix_ms] : batch.finished) {
    sqlite3_bind_int64(set_finished_, 1, static_cast<sqlite3_int64>(job));
    sqlite3_bind_int64(set_finished_, 2, unix_ms);
    if (!run(set_finished_)) return rollback(fmt::format("cannot update job {}", job));
  }
  for (const auto& [job, unix_ms] : batch.started) {
    sqlite3_bind_int64(set_started_, 1, static_cast<sqlite3_int64>(job));
    sqlite3_bind_int64(set_started_, 2, unix_ms);
    if (!run(set_started_)) return rollback(fmt::format("cannot update job {}", job));
  }
  if (!batch.forgotten_jobs.empty()) {
    // Their running rows (few, if any: a forgotten job has finished), found in
    // one pass over the rows.
    const std::set<core::JobId> forgotten(batch.forgotten_jobs.begin(), batch.forgotten_jobs.end());
    std::set<TaskKey> keys;
    for (const RunningRows* rows : {&running_rows_, &running}) {
      for (const auto& [key, row] : *rows) {
        if (forgotten.count(key.first) != 0) keys.insert(key);
      }
    }
    for (const TaskKey& key : keys) {
      if (!delete_running(key)) {
        return rollback(fmt::format("cannot delete job {}", key.first));
      }
    }
  }
  for (core::JobId job : batch.forgotten_jobs) {
    for (sqlite3_stmt* stmt : {delete_tasks_, delete_logs_, delete_job_blocks_, delete_job_}) {
      sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(job));
      if (!run(stmt)) return rollback(fmt::format("cannot delete job {}", job));
    }
  }
  for (const std::string& event_id : batch.forgotten_events) {
    bind_text(delete_event_, 1, event_id);
    if (!run(delete_event_)) return rollback("cannot delete publish event");
  }
  for (const LimitRow& limit : batch.limits) {
    bind_text(upsert_limit_, 1, limit.name);
    sqlite3_bind_int64(upsert_limit_, 2, limit.capacity);
    if (!run(upsert_limit_)) return rollback("cannot store limit");
  }
  for (const WorkerControlRow& control : batch.worker_controls) {
    if (control.control == core::WorkerControl::kEnabled) {
      bind_text(delete_control_, 1, control.name);
      if (!run(delete_control_)) return rollback("cannot store worker control");
      continue;
    }
    bind_text(upsert_control_, 1, control.name);
    sqlite3_bind_int(upsert_control_, 2, static_cast<int>(control.control));
    bind_text(upsert_control_, 3, control.reason);
    if (!run(upsert_control_)) return rollback("cannot store worker control");
  }
  for (const ActionKeyRow& key : batch.action_keys) {
    bind_text(insert_action_key_, 1, key.key);
    sqlite3_bind_int64(insert_action_key_, 2, static_cast<sqlite3_int64>(key.fingerprint));
    sqlite3_bind_blob(insert_action_key_, 3, key.reply.data(), static_cast<int>(key.reply.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert_action_key_, 4, key.stored_unix_ms);
    if (!run(insert_action_key_)) return rollback("cannot store action key");
  }
  if (batch.forget_action_keys_before != 0) {
    sqlite3_bind_int64(forget_action_keys_, 1, batch.forget_action_keys_before);
    if (!run(forget_action_keys_)) return rollback("cannot delete action keys");
  }
  for (const core::HookDelivery& d : batch.hook_deliveries) {
    bind_text(upsert_hook_delivery_, 1, d.id);
    sqlite3_bind_int64(upsert_hook_delivery_, 2, static_cast<sqlite3_int64>(d.seq));
    bind_text(upsert_hook_delivery_, 3, d.hook);
    bind_text(upsert_hook_delivery_, 4, d.event);
    sqlite3_bind_int64(upsert_hook_delivery_, 5, static_cast<sqlite3_int64>(d.job));
    bind_text(upsert_hook_delivery_, 6, d.body);
    sqlite3_bind_int64(upsert_hook_delivery_, 7, d.created_unix_ms);
    sqlite3_bind_int64(upsert_hook_delivery_, 8, d.attempts);
    sqlite3_bind_int64(upsert_hook_delivery_, 9, d.next_unix_ms);
    bind_text(upsert_hook_delivery_, 10, d.last_error);
    sqlite3_bind_int(upsert_hook_delivery_, 11, d.failed ? 1 : 0);
    sqlite3_bind_int64(upsert_hook_delivery_, 12, d.failed_unix_ms);
    if (!run(upsert_hook_delivery_)) return rollback("cannot store hook delivery");
  }
  for (const auto& [hook, id] : batch.hooks_delivered) {
    bind_text(delete_hook_delivery_, 1, id);
    if (!run(delete_hook_delivery_)) return rollback("cannot delete hook delivery");
    bind_text(count_hook_delivered_, 1, hook);
    if (!run(count_hook_delivered_)) return rollback("cannot count hook delivery");
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = write_failure();
    (void)exec("ROLLBACK");
    return fail(std::move(e));
  }
  stale_running_rows_.clear();
  for (const auto& [key, row] : running) {
    if (row == 0) {
      running_rows_.erase(key);
    } else {
      running_rows_[key] = row;
    }
  }
  return {};
}

Result<void> SqliteStore::find_running_rows() {
  running_rows_.clear();
  stale_running_rows_.clear();
  return each_row("SELECT rowid, job_id, idx FROM running_attempts ORDER BY rowid",
                  "running attempts", [this](sqlite3_stmt* stmt) {
                    const int64_t row = sqlite3_column_int64(stmt, 0);
                    const std::pair key{
                        static_cast<core::JobId>(sqlite3_column_int64(stmt, 1)),
                        static_cast<core::TaskIndex>(sqlite3_column_int64(stmt, 2))};
                    auto [it, added] = running_rows_.try_emplace(key, row);
                    if (!added) {
                      stale_running_rows_.push_back(it->second);
                      it->second = row;
                    }
                  });
}

Result<void> SqliteStore::load(const std::function<void(JobRow&&)>& on_job,
                               const std::function<void(TaskRow&&)>& on_task) {
  sqlite3_stmt* jobs = nullptr;
  if (sqlite3_prepare_v2(
          db_,
          "SELECT id, spec, submitted_unix_ms, coalesce(idempotency_key, ''), "
          "paused, cancelled, finished_unix_ms, started_unix_ms FROM jobs ORDER BY id",
          -1, &jobs, nullptr) != SQLITE_OK) {
    return fail(error("cannot read jobs"));
  }
  Finalizer jobs_finalizer{jobs};
  int rc;
  while ((rc = sqlite3_step(jobs)) == SQLITE_ROW) {
    JobRow row;
    row.id = static_cast<core::JobId>(sqlite3_column_int64(jobs, 0));
    const void* blob = sqlite3_column_blob(jobs, 1);
    row.spec.assign(static_cast<const char*>(blob),
                    blob ? static_cast<size_t>(sqlite3_column_bytes(jobs, 1)) : 0);
    row.submitted_unix_ms = sqlite3_column_int64(jobs, 2);
    row.idempotency_key = column_text(jobs, 3);
    row.paused = sqlite3_column_int(jobs, 4) != 0;
    row.cancelled = sqlite3_column_int(jobs, 5) != 0;
    row.finished_unix_ms = sqlite3_column_int64(jobs, 6);
    row.started_unix_ms = sqlite3_column_int64(jobs, 7);
    on_job(std::move(row));
  }
  if (rc != SQLITE_DONE) return fail(error("cannot read jobs"));

  sqlite3_stmt* tasks = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT job_id, idx, state, attempts, lease, worker, error, budget_base "
                         "FROM tasks",
                         -1, &tasks, nullptr) != SQLITE_OK) {
    return fail(error("cannot read tasks"));
  }
  Finalizer tasks_finalizer{tasks};
  while ((rc = sqlite3_step(tasks)) == SQLITE_ROW) {
    TaskRow row;
    row.job = static_cast<core::JobId>(sqlite3_column_int64(tasks, 0));
    row.task = static_cast<core::TaskIndex>(sqlite3_column_int64(tasks, 1));
    // A running attempt's own row is newer than the task's (read below).
    if (running_rows_.contains({row.job, row.task})) continue;
    int code = sqlite3_column_int(tasks, 2);
    std::optional<core::TaskState> state = task_state_from_code(code);
    if (!state) {
      // Its task is derived from its job as if it had never run: at least once, never
      // a wrong state.
      common::logger("store")->error(
          "task row skipped at load job={} task={} reason=\"unknown state code {}\"", row.job,
          row.task, code);
      continue;
    }
    row.state = *state;
    row.attempts = static_cast<uint32_t>(sqlite3_column_int64(tasks, 3));
    row.budget_base = static_cast<uint32_t>(sqlite3_column_int64(tasks, 7));
    row.lease = static_cast<core::LeaseToken>(sqlite3_column_int64(tasks, 4));
    row.worker = column_text(tasks, 5);
    row.error = column_text(tasks, 6);
    on_task(std::move(row));
  }
  if (rc != SQLITE_DONE) return fail(error("cannot read tasks"));
  return each_row(
      "SELECT rowid, job_id, idx, attempts, budget_base, lease, worker, error "
      "FROM running_attempts",
      "running attempts", [&](sqlite3_stmt* stmt) {
        TaskRow row;
        row.job = static_cast<core::JobId>(sqlite3_column_int64(stmt, 1));
        row.task = static_cast<core::TaskIndex>(sqlite3_column_int64(stmt, 2));
        // Only the task's latest row counts (find_running_rows).
        auto it = running_rows_.find({row.job, row.task});
        if (it == running_rows_.end() || it->second != sqlite3_column_int64(stmt, 0)) return;
        row.state = core::TaskState::kRunning;
        row.attempts = static_cast<uint32_t>(sqlite3_column_int64(stmt, 3));
        row.budget_base = static_cast<uint32_t>(sqlite3_column_int64(stmt, 4));
        row.lease = static_cast<core::LeaseToken>(sqlite3_column_int64(stmt, 5));
        row.worker = column_text(stmt, 6);
        row.error = column_text(stmt, 7);
        on_task(std::move(row));
      });
}

Result<void> SqliteStore::load_events(const std::function<void(EventRow&&)>& on_event) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT event_id, received_unix_ms, info FROM events ORDER BY seq",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    return fail(error("cannot read events"));
  }
  Finalizer finalizer{stmt};
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    EventRow row;
    row.event_id = column_text(stmt, 0);
    row.received_unix_ms = sqlite3_column_int64(stmt, 1);
    const void* blob = sqlite3_column_blob(stmt, 2);
    row.info.assign(static_cast<const char*>(blob),
                    blob ? static_cast<size_t>(sqlite3_column_bytes(stmt, 2)) : 0);
    on_event(std::move(row));
  }
  if (rc != SQLITE_DONE) return fail(error("cannot read events"));
  return {};
}

Result<void> SqliteStore::each_row(const char* sql, const char* what,
                                   const std::function<void(sqlite3_stmt*)>& on_row) {
  return each_row(
      sql, what, [](sqlite3_stmt*) {}, on_row);
}

Result<void> SqliteStore::each_row(const char* sql, const char* what,
                                   const std::function<void(sqlite3_stmt*)>& bind,
                                   const std::function<void(sqlite3_stmt*)>& on_row) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return fail(error(fmt::format("cannot read {}", what)));
  }
  Finalizer finalizer{stmt};
  bind(stmt);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) on_row(stmt);
  if (rc != SQLITE_DONE) return fail(error(fmt::format("cannot read {}", what)));
  return {};
}

Result<void> SqliteStore::load_limits(const std::function<void(LimitRow&&)>& on_limit) {
  return each_row("SELECT name, capacity FROM limits ORDER BY name", "limits",
                  [&](sqlite3_stmt* stmt) {
                    LimitRow row;
                    row.name = column_text(stmt, 0);
                    row.capacity = static_cast<uint32_t>(std::clamp<sqlite3_int64>(
                        sqlite3_column_int64(stmt, 1), 0, std::numeric_limits<uint32_t>::max()));
                    on_limit(std::move(row));
                  });
}

Result<void> SqliteStore::load_blocks(const std::function<void(core::WorkerBlock&&)>& on_block) {
  return each_row(
      "SELECT job_id, worker, failures, reason FROM job_blocks "
      "ORDER BY job_id, worker",
      "blocked workers", [&](sqlite3_stmt* stmt) {
        core::WorkerBlock block;
        block.job = static_cast<core::JobId>(sqlite3_column_int64(stmt, 0));
        block.worker = column_text(stmt, 1);
        block.failures = static_cast<uint32_t>(std::clamp<sqlite3_int64>(
            sqlite3_column_int64(stmt, 2), 0, std::numeric_limits<uint32_t>::max()));
        block.reason = column_text(stmt, 3);
        on_block(std::move(block));
      });
}

Result<void> SqliteStore::load_action_keys(const std::function<void(ActionKeyRow&&)>& on_key) {
  return each_row("SELECT key, fingerprint, reply, stored_unix_ms FROM action_keys", "action keys",
                  [&](sqlite3_stmt* stmt) {
                    ActionKeyRow row;
                    row.key = column_text(stmt, 0);
                    row.fingerprint = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
                    const void* blob = sqlite3_column_blob(stmt, 2);
                    row.reply.assign(static_cast<const char*>(blob),
                                     blob ? static_cast<size_t>(sqlite3_column_bytes(stmt, 2)) : 0);
                    row.stored_unix_ms = sqlite3_column_int64(stmt, 3);
                    on_key(std::move(row));
                  });
}

Result<void> SqliteStore::load_hook_deliveries(
    const std::function<void(core::HookDelivery&&)>& on_delivery,
    const std::function<void(const std::string& hook, uint64_t delivered)>& on_count) {
  auto ok = each_row(
      "SELECT delivery_id, seq, hook, event, job_id, body, created_unix_ms, attempts, "
      "next_unix_ms, last_error, failed, failed_unix_ms FROM hook_outbox ORDER BY seq",
      "hook deliveries", [&](sqlite3_stmt* stmt) {
        core::HookDelivery d;
        d.id = column_text(stmt, 0);
        d.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
        d.hook = column_text(stmt, 2);
        d.event = column_text(stmt, 3);
        d.job = static_cast<core::JobId>(sqlite3_column_int64(stmt, 4));
        d.body = column_text(stmt, 5);
        d.created_unix_ms = sqlite3_column_int64(stmt, 6);
        d.attempts = static_cast<uint32_t>(std::clamp<sqlite3_int64>(
            sqlite3_column_int64(stmt, 7), 0, std::numeric_limits<uint32_t>::max()));
        d.next_unix_ms = sqlite3_column_int64(stmt, 8);
        d.last_error = column_text(stmt, 9);
        d.failed = sqlite3_column_int(stmt, 10) != 0;
        d.failed_unix_ms = sqlite3_column_int64(stmt, 11);
        on_delivery(std::move(d));
      });
  if (!ok) return ok;
  return each_row(
      "SELECT hook, delivered FROM hook_counts", "hook counts", [&](sqlite3_stmt* stmt) {
        on_count(column_text(stmt, 0), static_cast<uint64_t>(sqlite3_column_int64(stmt, 1)));
      });
}

Result<void> SqliteStore::load_worker_controls(
    const std::function<void(WorkerControlRow&&)>& on_control) {
  return each_row("SELECT name, state, reason FROM worker_controls ORDER BY name",
                  "worker controls", [&](sqlite3_stmt* stmt) {
                    WorkerControlRow row;
                    row.name = column_text(stmt, 0);
                    const int state = sqlite3_column_int(stmt, 1);
                    row.control = state == 2 ? core::WorkerControl::kDraining
                                             : core::WorkerControl::kDisabled;
                    row.reason = column_text(stmt, 2);
                    on_control(std::move(row));
                  });
}

namespace {

constexpr const char* kStatsColumns =
    "wall_s, cpu_user_s, cpu_system_s, peak_rss_bytes, exit_code, exit_signal";

// The kStatsColumns starting at column `first`: none when cpu_user_s is NULL.
std::optional<AttemptStats> column_stats(sqlite3_stmt* stmt, int first) {
  if (sqlite3_column_type(stmt, first + 1) == SQLITE_NULL) return std::nullopt;
  AttemptStats stats;
  stats.wall_s = sqlite3_column_double(stmt, first);
  stats.cpu_user_s = sqlite3_column_double(stmt, first + 1);
  stats.cpu_system_s = sqlite3_column_double(stmt, first + 2);
  stats.peak_rss_bytes =
      static_cast<uint64_t>(std::max<sqlite3_int64>(sqlite3_column_int64(stmt, first + 3), 0));
  if (sqlite3_column_type(stmt, first + 4) != SQLITE_NULL) {
    stats.exit_code = sqlite3_column_int(stmt, first + 4);
  }
  const unsigned char* signal = sqlite3_column_text(stmt, first + 5);
  if (signal != nullptr) stats.exit_signal = reinterpret_cast<const char*>(signal);
  return stats;
}

}  // namespace

Result<std::vector<LogRow>> SqliteStore::logs(core::JobId job,
                                              std::optional<core::TaskIndex> task) {
  sqlite3_stmt* stmt = nullptr;
  const std::string sql =
      fmt::format("SELECT idx, attempt, worker, error, text, {} FROM task_logs {}", kStatsColumns,
                  task ? "WHERE job_id = ?1 AND idx = ?2 ORDER BY idx, attempt"
                       : "WHERE job_id = ?1 ORDER BY idx, attempt LIMIT 1000");
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return fail(error("cannot read logs"));
  }
  Finalizer finalizer{stmt};
  sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(job));
  if (task) sqlite3_bind_int64(stmt, 2, *task);
  std::vector<LogRow> out;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    LogRow row;
    row.job = job;
    row.task = static_cast<core::TaskIndex>(sqlite3_column_int64(stmt, 0));
    row.attempt = static_cast<uint32_t>(sqlite3_column_int(stmt, 1));
    row.worker = column_text(stmt, 2);
    row.error = column_text(stmt, 3);
    row.text = column_text(stmt, 4);
    row.stats = column_stats(stmt, 5);
    out.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return fail(error("cannot read logs"));
  return out;
}

Result<void> SqliteStore::load_job_usage(
    const std::function<void(core::JobId, const JobUsage&)>& on_job) {
  return each_row(
      "SELECT job_id, SUM(cpu_user_s + cpu_system_s), MAX(peak_rss_bytes), "
      "COUNT(*) FROM task_logs WHERE cpu_user_s IS NOT NULL "
      "GROUP BY job_id ORDER BY job_id",
      "job usage", [&](sqlite3_stmt* stmt) {
        JobUsage usage;
        usage.cpu_s = sqlite3_column_double(stmt, 1);
        usage.peak_rss_bytes =
            static_cast<uint64_t>(std::max<sqlite3_int64>(sqlite3_column_int64(stmt, 2), 0));
        usage.attempts = static_cast<uint64_t>(sqlite3_column_int64(stmt, 3));
        on_job(static_cast<core::JobId>(sqlite3_column_int64(stmt, 0)), usage);
      });
}

Result<std::vector<LogRow>> SqliteStore::last_attempt_rows(
    const char* sql, const char* what, core::JobId job, core::TaskIndex first, core::TaskIndex last,
    const std::function<void(sqlite3_stmt*, LogRow&)>& fill) {
  std::vector<LogRow> out;
  auto ok = each_row(
      sql, what,
      [&](sqlite3_stmt* stmt) {
        sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(job));
        sqlite3_bind_int64(stmt, 2, first);
        sqlite3_bind_int64(stmt, 3, last);
      },
      [&](sqlite3_stmt* stmt) {
        LogRow row;
        row.job = job;
        row.task = static_cast<core::TaskIndex>(sqlite3_column_int64(stmt, 0));
        row.attempt = static_cast<uint32_t>(sqlite3_column_int(stmt, 1));
        fill(stmt, row);
        out.push_back(std::move(row));
      });
  if (!ok) return fail(ok.error());
  return out;
}

Result<std::vector<LogRow>> SqliteStore::last_attempt_stats(core::JobId job, core::TaskIndex first,
                                                            core::TaskIndex last) {
  // SQLite takes the bare columns of a MAX() aggregate from the row with the maximum.
  static const std::string sql = fmt::format(
      "SELECT idx, MAX(attempt), {} FROM task_logs WHERE job_id = ?1 AND idx BETWEEN ?2 AND ?3 "
      "AND cpu_user_s IS NOT NULL GROUP BY idx ORDER BY idx",
      kStatsColumns);
  return last_attempt_rows(
      sql.c_str(), "attempt usage", job, first, last,
      [](sqlite3_stmt* stmt, LogRow& row) { row.stats = column_stats(stmt, 2); });
}

Result<std::vector<LogRow>> SqliteStore::last_attempts(core::JobId job, core::TaskIndex first,
                                                       core::TaskIndex last) {
  // SQLite takes the bare columns of a MAX() aggregate from the row with the
  // maximum; task_logs_times covers the whole query.
  const char* sql =
      "SELECT idx, MAX(attempt), worker, coalesce(started_unix_ms, 0), "
      "coalesce(finished_unix_ms, 0) FROM task_logs WHERE job_id = ?1 AND idx BETWEEN ?2 AND ?3 "
      "GROUP BY idx ORDER BY idx";
  return last_attempt_rows(sql, "attempts", job, first, last, [](sqlite3_stmt* stmt, LogRow& row) {
    row.worker = column_text(stmt, 2);
    row.started_unix_ms = sqlite3_column_int64(stmt, 3);
    row.finished_unix_ms = sqlite3_column_int64(stmt, 4);
  });
}

Result<void> SqliteStore::backup_to(const std::string& path) {
  sqlite3* target = nullptr;
  if (sqlite3_open(path.c_str(), &target) != SQLITE_OK) {
    std::string reason = target ? sqlite3_errmsg(target) : "out of memory";
    sqlite3_close(target);
    return fail(ErrorCode::kIo, fmt::format("cannot open backup {}: {}", path, reason));
  }
  sqlite3_backup* backup = sqlite3_backup_init(target, "main", db_, "main");
  if (!backup) {
    std::string reason = sqlite3_errmsg(target);
    sqlite3_close(target);
    return fail(ErrorCode::kIo, fmt::format("cannot back up to {}: {}", path, reason));
  }
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  std::string reason = sqlite3_errmsg(target);
  sqlite3_close(target);
  if (rc != SQLITE_DONE) {
    return fail(ErrorCode::kIo, fmt::format("backup to {} failed: {}", path, reason));
  }
  return {};
}

}  // namespace farmhand::daemon
