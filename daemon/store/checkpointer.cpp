#include "daemon/store/checkpointer.h"

#include <sqlite3.h>

#include "common/logging.h"
#include "common/signal_free_thread.h"

namespace farmhand::daemon {

Checkpointer::Checkpointer(std::string path) : path_(std::move(path)) {
  // No signal for it: SIGTERM or SIGHUP delivered to this thread would end
  // the broker (which reads them from a signalfd).
  thread_ = common::start_signal_free_thread("fh-checkpoint", [this] { run(); });
}

Checkpointer::~Checkpointer() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Checkpointer::request(int wal_frames) {
  if (wal_frames < kThresholdFrames) return;
  {
    std::lock_guard lock(mutex_);
    if (wanted_) return;
    wanted_ = true;
  }
  wake_.notify_one();
}

uint64_t Checkpointer::completed() const {
  std::lock_guard lock(mutex_);
  return completed_;
}

void Checkpointer::run() {
  auto log = common::logger("store");
  sqlite3* db = nullptr;
  // Only this thread uses the connection. It writes the database file, so it
  // opens read-write, but it never starts a write transaction.
  if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    log->error("checkpointer cannot open the state store path={} reason=\"{}\"; the WAL grows",
               path_, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    db = nullptr;
  }
  std::string last_failure;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return wanted_ || stop_; });
    if (stop_) break;
    wanted_ = false;
    if (db == nullptr) continue;
    lock.unlock();
    int wal_frames = 0;
    int copied = 0;
    std::string failure;
    // A connection finds the WAL when it first reads the database: until then
    // SQLite takes it for a rollback-journal one, and a checkpoint does nothing
    // and reports -1 frames (the WAL then grew without end). One read opens it.
    int rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
      if (rc == SQLITE_OK && wal_frames < 0) failure = "the database is not in WAL mode";
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) failure = sqlite3_errmsg(db);
    if (failure != last_failure) {
      if (!failure.empty()) {
        log->warn("checkpoint failed path={} reason=\"{}\"; the WAL keeps every commit and grows",
                  path_, failure);
      } else {
        log->info("checkpoints work again path={}", path_);
      }
      last_failure = failure;
    }
    lock.lock();
    if (failure.empty() && rc == SQLITE_OK && copied == wal_frames) ++completed_;
  }
  lock.unlock();
  sqlite3_close_v2(db);
}

}  // namespace farmhand::daemon
