// Checkpointer: copies the WAL back into the database file on a thread of its
// own, so that the event loop's commits never do it.
//
// SQLite's automatic checkpoint runs inside the commit that takes the WAL past
// 1,000 pages: that commit then syncs the WAL, writes every page back and syncs
// the database file, on the broker's loop, while reads and dispatch wait. Under
// a full farm that was a fifth of the broker's time and its longest turns.
// Here the store's connection turns the automatic checkpoint off and calls
// request() after each commit with the WAL's size; past the threshold, this
// thread runs a PASSIVE checkpoint on a connection of its own. A passive
// checkpoint takes no lock a writer needs (SQLite's WAL design: one writer,
// readers and a checkpointer run at once), so the loop never waits for it.
// Durability is unchanged: SQLite syncs the WAL before it copies a frame and the
// database after, and a frame is only dropped once the database holds it.
// A checkpoint that fails (the disk is full) loses nothing: the WAL keeps every
// frame and grows; it is logged once per change of reason and tried again at
// the next request.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace farmhand::daemon {

class Checkpointer {
 public:
  // Frames in the WAL at which a checkpoint is started (SQLite's default for
  // its automatic one).
  static constexpr int kThresholdFrames = 1000;

  // `path`: the database file. The thread opens its own connection.
  explicit Checkpointer(std::string path);
  ~Checkpointer();

  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // After a commit: the WAL now holds `wal_frames` frames. Never blocks on a
  // checkpoint in progress.
  void request(int wal_frames);

  // Checkpoints that completed (every frame then in the WAL was copied back).
  uint64_t completed() const;

 private:
  void run();

  const std::string path_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool wanted_ = false;
  bool stop_ = false;
  uint64_t completed_ = 0;
  std::thread thread_;
};

}  // namespace farmhand::daemon
