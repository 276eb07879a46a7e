// StateDir: the broker's state directory, owned by one broker at a time.
//
// open() creates the directory and takes an exclusive flock on STATE_DIR/farmhand.lock,
// which then holds the owner's pid. A second broker on the same directory is refused
// ("state dir /var/lib/farmhand is in use by farmhandd pid 4242") before it touches the
// database or binds a socket, so no task is ever dispatched twice. The lock lives as
// long as the StateDir; its descriptor is O_CLOEXEC, so local workers and the tasks they
// run never inherit it (a stray child cannot keep a dead broker's directory locked).
//
// STATE_DIR/farmhand.state is a marker written (and fsynced, with the directory) once
// the database has been created and migrated. A marker without a database, or with a
// zero-byte one, means the state was lost (a bad restore, a truncated copy): open_store()
// refuses instead of starting an empty farm that would reuse job ids. A file that is not
// a SQLite database, or a corrupt one, is refused with the file named (SqliteStore
// classifies it) and how to restore it.
//
// Not thread-safe: one owner (the broker's main thread). Must not be shared between
// processes except through the lock.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "daemon/store/sqlite_store.h"

namespace farmhand::daemon {

class StateDir {
 public:
  static constexpr const char* kDatabaseName = "farmhand.db";
  static constexpr const char* kLockName = "farmhand.lock";
  static constexpr const char* kMarkerName = "farmhand.state";

  // Creates `dir` (and its parents) and locks it for this process.
  [[nodiscard]] static Result<std::unique_ptr<StateDir>> open(const std::string& dir);
  ~StateDir();
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;

  const std::string& path() const { return path_; }

  std::string database_path() const;
  std::string marker_path() const;

  // The worker endpoint's CurveZMQ key pair, made by the broker on first start
  // (EndpointSecurity): PREFIX.key (0600) and PREFIX.pub. Static, so that
  // `farmhandd --print-worker-key` reads it without taking the lock.
  static std::string broker_key_prefix(const std::string& dir) { return dir + "/keys/broker"; }

  // Where the public keys (*.pub) of admitted workers go by default.
  static std::string worker_keys_dir(const std::string& dir) { return dir + "/keys/workers"; }

  // Refuses a lost database: the marker says one was created, but it is missing or
  // empty. Fine when there is no marker (a fresh directory, or one from before the
  // marker existed).
  [[nodiscard]] Result<void> check_database() const;
  // check_database, then opens (creating and migrating as needed) the store and
  // records that the database exists.
  [[nodiscard]] Result<std::unique_ptr<SqliteStore>> open_store(
      const std::string& synchronous, SqliteStore::Flush flush = SqliteStore::Flush::kInCommit);

 private:
  StateDir(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

  // Writes the marker, fsyncs it and the directory. Idempotent.
  [[nodiscard]] Result<void> write_marker() const;

  std::string path_;
  int lock_fd_ = -1;
};

}  // namespace farmhand::daemon
