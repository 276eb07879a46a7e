// What farmhand-worker keeps in its work dir across restarts: the lock that
// makes the dir one live worker's own, and the results the broker has not
// acknowledged yet.
//
// WorkDirLock holds flock(LOCK_EX) on WORK_DIR/worker.lock for the process's
// lifetime (the descriptor is close-on-exec, so tasks do not inherit it); the
// file holds the owner's pid so a second worker can name it when it refuses.
//
// ResultStore keeps one file per result under WORK_DIR/results, written to a
// temporary name, fsynced and renamed into place, so a crash leaves either the
// whole result or none. It does no I/O on its own: the worker decides which
// results are worth the fsync. Not thread-safe: the worker's loop owns both.
#pragma once

#include <string>
#include <vector>

#include "farmhand.pb.h"

#include "common/result.h"

namespace farmhand::worker {

class WorkDirLock {
 public:
  // Creates `dir` if needed and locks it; fails with one line naming the pid
  // of the live worker that holds it.
  [[nodiscard]] static Result<WorkDirLock> acquire(const std::string& dir);

  WorkDirLock(WorkDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

  WorkDirLock& operator=(WorkDirLock&& other) noexcept;
  WorkDirLock(const WorkDirLock&) = delete;
  WorkDirLock& operator=(const WorkDirLock&) = delete;
  ~WorkDirLock();

 private:
  explicit WorkDirLock(int fd) : fd_(fd) {}

  int fd_ = -1;
};

class ResultStore {
 public:
  explicit ResultStore(std::string work_dir);

  // Writes these results durably (each to a temporary name, fsync, rename;
  // then one fsync of the directory).
  [[nodiscard]] Result<void> save(const std::vector<const wire::TaskResult*>& results);

  // Forgets a saved result (the broker acknowledged it). A missing file is fine.
  void remove(const wire::TaskRef& ref);

  struct Loaded {
    std::vector<wire::TaskResult> results;
    std::vector<std::string> dropped;  // unreadable files, removed, one line each
  };

  // Every saved result; removes leftover temporary files and unreadable ones.
  [[nodiscard]] Result<Loaded> load();

  std::string path(const wire::TaskRef& ref) const;

 private:
  std::string dir_;
};

}  // namespace farmhand::worker
