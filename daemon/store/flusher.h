// Flusher: makes the store's commits durable off the event loop.
//
// The broker numbers its commits. A store whose commit() returns once the batch
// is written but not yet on stable storage (SQLite in WAL mode with
// synchronous=NORMAL: the batch survives farmhandd being killed, not the host
// losing power) is made durable by flushing one file, the WAL; one flush covers
// every commit written before it, so the commits of all the turns that ran
// while a flush was under way share the next one (group commit, as in
// PostgreSQL's WAL writer). The loop keeps handling messages meanwhile and
// holds each turn's replies, acks, Assigns and Cancels until flushed() reaches
// the turn's commit number: nothing leaves the broker before it is durable.
//
// A failed flush is sticky: after fdatasync fails, the kernel may have dropped
// the pages it could not write while reporting them clean, so nothing written
// since the last good flush can be trusted to be on disk (the PostgreSQL
// "fsyncgate" lesson). The broker then stops and lets systemd restart it on
// what the disk really holds; retrying the fdatasync would only lie.
//
// Thread-safety: request(), flushed(), fd() and wait() are called by the loop
// thread only; FileFlusher's own thread does the flushing.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/result.h"

namespace farmhand::daemon {

class Flusher {
 public:
  virtual ~Flusher() = default;

  // Asks for every commit up to number `seq` to be made durable. Returns at once.
  virtual void request(uint64_t seq) = 0;

  // The highest commit number known durable, or the error of a failed flush.
  // Never blocks.
  virtual Result<uint64_t> flushed() = 0;

  // Readable when flushed() may have moved on (for the loop's poll); -1 when
  // it never moves by itself.
  virtual int fd() const = 0;

  // Blocks until commit `seq` is durable or a flush failed (shutdown, and
  // before undoing a turn whose commit failed).
  virtual Result<uint64_t> wait(uint64_t seq) = 0;
};

// For stores whose commit() is durable when it returns (or is never flushed,
// with synchronous=normal or off): every commit counts as flushed at once.
class InlineFlusher final : public Flusher {
 public:
  void request(uint64_t seq) override { done_ = std::max(done_, seq); }

  Result<uint64_t> flushed() override { return done_; }

  int fd() const override { return -1; }

  Result<uint64_t> wait(uint64_t seq) override {
    request(seq);
    return done_;
  }

 private:
  uint64_t done_ = 0;
};

// Flushes one file (fdatasync) on a thread of its own, and says so through an
// eventfd. The file is opened by path; when it has been replaced (a new inode at
// the path) the new one is opened and its directory flushed, and when it is
// gone (SQLite removes its WAL when the last connection closes, after
// checkpointing it into the database and syncing that) there is nothing left
// to flush.
class FileFlusher final : public Flusher {
 public:
  [[nodiscard]] static Result<std::unique_ptr<FileFlusher>> open(const std::string& path);
  ~FileFlusher() override;

  void request(uint64_t seq) override;
  Result<uint64_t> flushed() override;

  int fd() const override { return event_fd_; }

  Result<uint64_t> wait(uint64_t seq) override;

  // How many fdatasync calls ran (for the log and benchmarks).
  uint64_t flushes() const;

 private:
  explicit FileFlusher(std::string path);
  void run();
  Result<void> flush_once();
  Result<void> reopen();

  const std::string path_;
  int file_fd_ = -1;
  int event_fd_ = -1;

  mutable std::mutex mu_;
  std::condition_variable wake_;     // the thread waits for requests here
  std::condition_variable settled_;  // wait() waits for flushes here
  uint64_t requested_ = 0;
  uint64_t done_ = 0;
  uint64_t flushes_ = 0;
  std::optional<Error> error_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after everything it reads exists
};

// The Flusher a store needs: a FileFlusher on store.flush_path(), or an
// InlineFlusher when the store's commits are durable by themselves.
[[nodiscard]] Result<std::unique_ptr<Flusher>> make_flusher(const std::string& flush_path);

}  // namespace farmhand::daemon
