// FileFlusher: fdatasync of one file on a thread of its own, told through an
// eventfd; a failed flush is sticky; a replaced file is followed by its path.
#include "daemon/store/flusher.h"

#include <fstream>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>

#include "daemon/store/sqlite_store.h"

namespace farmhand::daemon {
namespace {

using testing_support::TempDir;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Waits (without a timeout of its own: ctest's bounds the test) until the
// flusher's eventfd says a flush settled.
void await_settled(Flusher& flusher) {
  pollfd item{flusher.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&item, 1, -1), 1);
}

TEST(FileFlusherTest, ARequestIsFlushedOnItsThreadAndTheEventFdSaysSo) {
  TempDir dir;
  const std::string path = dir.file("farmhand.db-wal");
  write_file(path, "frames");
  auto flusher = FileFlusher::open(path);
  ASSERT_TRUE(flusher) << flusher.error().reason;
  ASSERT_EQ(*(*flusher)->flushed(), 0u);

  (*flusher)->request(1);
  while (*(*flusher)->flushed() < 1) await_settled(**flusher);
  EXPECT_EQ(*(*flusher)->flushed(), 1u);

  // Requests made while a flush runs are covered by the next one: never more
  // flushes than requests, and wait() returns once its number is durable.
  for (uint64_t seq = 2; seq <= 50; ++seq) (*flusher)->request(seq);
  auto done = (*flusher)->wait(50);
  ASSERT_TRUE(done);
  EXPECT_EQ(*done, 50u);
  EXPECT_LE((*flusher)->flushes(), 50u);
  EXPECT_GE((*flusher)->flushes(), 2u);
}

TEST(FileFlusherTest, AFailedFlushNamesTheFileAndStaysFailed) {
  TempDir dir;
  // fdatasync of a FIFO fails (EINVAL), as one of a failing disk does (EIO).
  const std::string path = dir.file("farmhand.db-wal");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto flusher = FileFlusher::open(path);
  ASSERT_TRUE(flusher) << flusher.error().reason;

  auto failed = (*flusher)->wait(1);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::kIo);
  EXPECT_EQ(failed.error().reason, "state store flush failed: Invalid argument (" + path + ")");
  // Sticky: a later request is not flushed "successfully" over lost pages.
  (*flusher)->request(2);
  auto still = (*flusher)->flushed();
  ASSERT_FALSE(still);
  EXPECT_EQ(still.error().reason, failed.error().reason);
}

TEST(FileFlusherTest, AReplacedFileIsFollowedByItsPath) {
  TempDir dir;
  const std::string path = dir.file("farmhand.db-wal");
  write_file(path, "frames");
  auto flusher = FileFlusher::open(path);
  ASSERT_TRUE(flusher) << flusher.error().reason;
  ASSERT_TRUE((*flusher)->wait(1));

  // A new inode at the path (here one that cannot be flushed, so that the
  // test sees which file the flusher flushed).
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::rename(fifo.c_str(), path.c_str()), 0);
  auto failed = (*flusher)->wait(2);
  ASSERT_FALSE(failed) << "flushed the old file, not the one now at the path";
}

TEST(FileFlusherTest, AFileNotThereHasNothingToFlushUntilItIs) {
  TempDir dir;
  const std::string path = dir.file("farmhand.db-wal");
  auto flusher = FileFlusher::open(path);
  ASSERT_TRUE(flusher) << flusher.error().reason;
  auto done = (*flusher)->wait(1);
  ASSERT_TRUE(done) << done.error().reason;
  EXPECT_EQ(*done, 1u);
  write_file(path, "frames");
  ASSERT_TRUE((*flusher)->wait(2));
}

TEST(FileFlusherTest, ASqliteStoreFlushedByItsCallerNamesItsWal) {
  TempDir dir;
  const std::string db = dir.file("farmhand.db");
  {
    auto inline_store = SqliteStore::open(db, "full");
    ASSERT_TRUE(inline_store);
    EXPECT_EQ((*inline_store)->flush_path(), "") << "full and kInCommit: durable by itself";
  }
  auto store = SqliteStore::open(db, "full", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->flush_path(), db + "-wal");
  auto flusher = make_flusher((*store)->flush_path());
  ASSERT_TRUE(flusher);
  Batch batch;
  JobRow job;
  job.id = 1;
  job.submitted_unix_ms = 1;
  batch.new_jobs.push_back(job);
  ASSERT_TRUE((*store)->commit(batch));

  struct stat wal = {};
  ASSERT_EQ(::stat((db + "-wal").c_str(), &wal), 0);
  EXPECT_GT(wal.st_size, 0);
  auto done = (*flusher)->wait(1);
  ASSERT_TRUE(done) << done.error().reason;

  auto unsynced = SqliteStore::open(dir.file("other.db"), "normal", SqliteStore::Flush::kByCaller);
  ASSERT_TRUE(unsynced);
  EXPECT_EQ((*unsynced)->flush_path(), "") << "synchronous=normal is never flushed";
}

// The broker takes its signals through a signalfd, with them blocked in the
// loop's thread; a flusher thread that did not block them would take SIGHUP
// (a config reload) with its default action and kill the broker.
TEST(FileFlusherTest, ItsThreadTakesNoSignal) {
  TempDir dir;
  const std::string path = dir.file("farmhand.db-wal");
  write_file(path, "frames");
  auto flusher = FileFlusher::open(path);  // created with SIGHUP unblocked here
  ASSERT_TRUE(flusher);
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  sigset_t previous;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &hup, &previous), 0);
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);  // to the process: any thread not blocking it
  sigset_t pending;
  sigpending(&pending);
  EXPECT_TRUE(sigismember(&pending, SIGHUP)) << "a thread took SIGHUP";
  timespec none{0, 0};
  EXPECT_EQ(sigtimedwait(&hup, nullptr, &none), SIGHUP);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ASSERT_TRUE((*flusher)->wait(1));
}

}  // namespace
}  // namespace farmhand::daemon
