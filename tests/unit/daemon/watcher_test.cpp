#include "daemon/watcher.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::daemon {
namespace {

using namespace std::chrono_literals;
using Clock = FolderWatcher::Clock;
using testing_support::TempDir;

// An arbitrary steady-clock origin: tests drive time explicitly.
const Clock::time_point t0 = Clock::time_point{} + 100h;

void write_file(const std::string& path, size_t bytes, bool append = false) {
  std::ofstream out(path, append ? std::ios::binary | std::ios::app : std::ios::binary);
  out << std::string(bytes, 'x');
}

// Sets both times to `age` before the wall clock's now.
void set_age(const std::string& path, std::chrono::seconds age) {
  const auto when = std::chrono::system_clock::now() - age;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  timespec times[2];
  times[0].tv_sec = ns / 1'000'000'000;
  times[0].tv_nsec = ns % 1'000'000'000;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

std::string frame_path(const TempDir& dir, const std::string& prefix, int frame,
                       const std::string& suffix = ".exr") {
  char number[16];
  std::snprintf(number, sizeof number, "%04d", frame);
  return dir.file(prefix + "." + number + suffix);
}

// inotify queues an event inside the system call that caused it, so the descriptor is
// readable as soon as the file operation returns; the bounded wait only guards against a
// missing event hanging the test.
void pump(FolderWatcher& watcher, Clock::time_point now) {
  pollfd readable{watcher.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 5000), 1) << "no inotify event within 5 s";
  watcher.on_readable(now);
}

std::unique_ptr<FolderWatcher> start(std::vector<WatchSpec> specs, Clock::time_point now = t0) {
  Result<std::unique_ptr<FolderWatcher>> watcher = FolderWatcher::create(std::move(specs), now);
  EXPECT_TRUE(watcher.has_value()) << (watcher ? "" : watcher.error().reason);
  return watcher ? std::move(*watcher) : nullptr;
}

WatchSpec spec_for(const TempDir& dir) {
  WatchSpec spec;
  spec.dir = dir.path();
  spec.settle = 5s;
  return spec;
}

TEST(FolderWatcherTest, SequenceWrittenFrameByFrameIsReportedOnceAfterTheLastFrameSettles) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  EXPECT_FALSE(watcher->next_deadline().has_value());

  // A frame every 3 s: never 5 s of quiet until the last one.
  Clock::time_point now = t0;
  for (int frame = 1001; frame <= 1005; ++frame) {
    now = t0 + (frame - 1001) * 3s;
    write_file(frame_path(dir, "sh010_comp_v003", frame), 100);
    pump(*watcher, now);
    EXPECT_TRUE(watcher->take_settled(now).empty()) << frame;
    EXPECT_TRUE(watcher->take_settled(now + 2999ms).empty()) << frame;
  }
  const Clock::time_point last = now;
  EXPECT_TRUE(watcher->take_settled(last + 4999ms).empty());
  ASSERT_TRUE(watcher->next_deadline().has_value());
  EXPECT_LE(*watcher->next_deadline(), last + 5s);

  std::vector<SettledSequence> settled = watcher->take_settled(last + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].watch, 0u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/sh010_comp_v003.####.exr");
  EXPECT_EQ(settled[0].frames, "1001-1005");
  EXPECT_EQ(settled[0].file_count, 5u);
  EXPECT_EQ(settled[0].total_bytes, 500u);
  EXPECT_NE(settled[0].signature.find("1001-1005"), std::string::npos);

  EXPECT_TRUE(watcher->take_settled(last + 6s).empty());
  EXPECT_TRUE(watcher->take_settled(last + 1h).empty());
  EXPECT_FALSE(watcher->next_deadline().has_value());
}

TEST(FolderWatcherTest, FrameAddedLaterIsReportedAgainWithANewSignature) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  for (int frame = 1; frame <= 3; ++frame) write_file(frame_path(dir, "a", frame), 10);
  pump(*watcher, t0);
  std::vector<SettledSequence> first = watcher->take_settled(t0 + 5s);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].frames, "1-3");

  write_file(frame_path(dir, "a", 4), 10);
  pump(*watcher, t0 + 60s);
  EXPECT_TRUE(watcher->take_settled(t0 + 64s).empty());
  std::vector<SettledSequence> second = watcher->take_settled(t0 + 65s);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].pattern, first[0].pattern);
  EXPECT_EQ(second[0].frames, "1-4");
  EXPECT_EQ(second[0].file_count, 4u);
  EXPECT_EQ(second[0].total_bytes, 40u);
  EXPECT_NE(second[0].signature, first[0].signature);
}

TEST(FolderWatcherTest, GrowingFileResetsTheSettleTime) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  const std::string movie = dir.file("review.mov");
  write_file(movie, 1000);
  pump(*watcher, t0);
  write_file(movie, 1000, /*append=*/true);
  pump(*watcher, t0 + 4s);
  EXPECT_TRUE(watcher->take_settled(t0 + 5s).empty());
  EXPECT_TRUE(watcher->take_settled(t0 + 8999ms).empty());
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 9s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].total_bytes, 2000u);
}

TEST(FolderWatcherTest, SingleFileIsReportedAsItself) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  write_file(dir.file("notes.mov"), 42);
  pump(*watcher, t0);
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.file("notes.mov"));
  EXPECT_EQ(settled[0].frames, "");
  EXPECT_EQ(settled[0].file_count, 1u);
  EXPECT_EQ(settled[0].total_bytes, 42u);
}

TEST(FolderWatcherTest, TemporaryAndHiddenNamesAreIgnoredAndTheRenameCounts) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  write_file(frame_path(dir, "sh010", 1001, ".exr.tmp"), 10);
  write_file(frame_path(dir, "sh010", 1002, ".exr.part"), 10);
  write_file(dir.file("sh010.1003.exr~"), 10);
  write_file(dir.file(".sh010.1004.exr"), 10);
  pump(*watcher, t0);
  EXPECT_TRUE(watcher->take_settled(t0 + 1h).empty());
  EXPECT_FALSE(watcher->next_deadline().has_value());

  // The renderer renames when the frame is complete: that is the arrival.
  ASSERT_EQ(std::rename(frame_path(dir, "sh010", 1001, ".exr.tmp").c_str(),
                        frame_path(dir, "sh010", 1001).c_str()),
            0);
  pump(*watcher, t0 + 2h);
  EXPECT_TRUE(watcher->take_settled(t0 + 2h + 4s).empty());
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 2h + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/sh010.####.exr");
  EXPECT_EQ(settled[0].frames, "1001");
}

TEST(FolderWatcherTest, SubfolderCreatedAfterStartIsWatched) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  EXPECT_EQ(watcher->watched_folders(), 1u);
  // Folder and first frame exist before the watcher hears of the folder: the scan of the new
  // folder finds the frame.
  std::filesystem::create_directories(dir.file("sh020/comp"));
  write_file(dir.path() + "/sh020/comp/sh020.0001.exr", 10);
  pump(*watcher, t0);
  EXPECT_EQ(watcher->watched_folders(), 3u);

  write_file(dir.path() + "/sh020/comp/sh020.0002.exr", 10);
  pump(*watcher, t0 + 3s);
  EXPECT_TRUE(watcher->take_settled(t0 + 7s).empty());
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 8s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/sh020/comp/sh020.####.exr");
  EXPECT_EQ(settled[0].frames, "1-2");
}

TEST(FolderWatcherTest, NonRecursiveSpecIgnoresSubfolders) {
  TempDir dir;
  WatchSpec spec = spec_for(dir);
  spec.recursive = false;
  auto watcher = start({spec});
  ASSERT_TRUE(watcher);
  std::filesystem::create_directories(dir.file("sub"));
  write_file(dir.path() + "/sub/a.0001.exr", 10);
  pump(*watcher, t0);
  EXPECT_EQ(watcher->watched_folders(), 1u);
  EXPECT_TRUE(watcher->take_settled(t0 + 1h).empty());
}

TEST(FolderWatcherTest, IncludeGlobsFilterFiles) {
  TempDir dir;
  WatchSpec spec = spec_for(dir);
  spec.include = {"*.exr", "*.mov"};
  auto watcher = start({spec});
  ASSERT_TRUE(watcher);
  for (int frame = 1; frame <= 2; ++frame) {
    write_file(frame_path(dir, "beauty", frame), 10);
    write_file(frame_path(dir, "beauty", frame, ".jpg"), 10);
  }
  write_file(dir.file("readme.txt"), 10);
  write_file(dir.file("edit.mov"), 10);
  // A folder that arrives with its files is scanned rather than heard of file by file.
  std::filesystem::create_directories(dir.file("sub"));
  write_file(dir.path() + "/sub/matte.0001.exr", 10);
  write_file(dir.path() + "/sub/matte.0001.jpg", 10);
  pump(*watcher, t0);
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 5s);
  ASSERT_EQ(settled.size(), 3u);
  std::sort(settled.begin(), settled.end(),
            [](const auto& a, const auto& b) { return a.pattern < b.pattern; });
  EXPECT_EQ(settled[0].pattern, dir.path() + "/beauty.####.exr");
  EXPECT_EQ(settled[1].pattern, dir.file("edit.mov"));
  EXPECT_EQ(settled[2].pattern, dir.path() + "/sub/matte.####.exr");
}

TEST(FolderWatcherTest, IncludeGlobMatchingSomeFramesReportsOnlyThoseFrames) {
  TempDir dir;
  WatchSpec spec = spec_for(dir);
  spec.include = {"a.000[1-3].exr", "a.0005.exr"};
  for (int frame = 1; frame <= 5; ++frame) write_file(frame_path(dir, "a", frame), 10);
  auto watcher = start({spec});
  ASSERT_TRUE(watcher);
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].frames, "1-3,5");
  EXPECT_EQ(settled[0].file_count, 4u);
  EXPECT_EQ(settled[0].total_bytes, 40u);
}

TEST(FolderWatcherTest, OldFilesFoundAtStartAreSettledAtOnceAndNewOnesWait) {
  TempDir dir;
  for (int frame = 1; frame <= 3; ++frame) {
    write_file(frame_path(dir, "old", frame), 10);
    set_age(frame_path(dir, "old", frame), 1h);
  }
  write_file(frame_path(dir, "new", 1), 10);  // written just now: may still be rendering
  auto watcher = start({spec_for(dir)}, t0);
  ASSERT_TRUE(watcher);
  std::vector<SettledSequence> settled = watcher->take_settled(t0);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/old.####.exr");
  EXPECT_EQ(settled[0].frames, "1-3");
  settled = watcher->take_settled(t0 + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/new.####.exr");
}

TEST(FolderWatcherTest, UnchangedFilesGiveTheSameSignatureAfterARestart) {
  TempDir dir;
  for (int frame = 1; frame <= 3; ++frame) {
    write_file(frame_path(dir, "a", frame), 10);
    set_age(frame_path(dir, "a", frame), 1h);
  }
  auto first = start({spec_for(dir)});
  ASSERT_TRUE(first);
  std::vector<SettledSequence> before = first->take_settled(t0);
  first.reset();
  auto second = start({spec_for(dir)}, t0 + 1h);
  ASSERT_TRUE(second);
  std::vector<SettledSequence> after = second->take_settled(t0 + 1h);
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(after, before);
}

TEST(FolderWatcherTest, RewrittenFrameOfTheSameSizeIsReportedAgain) {
  TempDir dir;
  write_file(frame_path(dir, "a", 1), 10);
  set_age(frame_path(dir, "a", 1), 1h);
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  std::vector<SettledSequence> first = watcher->take_settled(t0);
  ASSERT_EQ(first.size(), 1u);

  write_file(frame_path(dir, "a", 1), 10);  // a re-render: new content, same size
  pump(*watcher, t0 + 10s);
  std::vector<SettledSequence> second = watcher->take_settled(t0 + 15s);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].total_bytes, first[0].total_bytes);
  EXPECT_NE(second[0].signature, first[0].signature);
}

TEST(FolderWatcherTest, SequenceThatOnlyLostFramesIsNotReportedAgain) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  for (int frame = 1; frame <= 3; ++frame) write_file(frame_path(dir, "a", frame), 10);
  pump(*watcher, t0);
  ASSERT_EQ(watcher->take_settled(t0 + 5s).size(), 1u);
  ASSERT_EQ(::unlink(frame_path(dir, "a", 3).c_str()), 0);
  pump(*watcher, t0 + 10s);
  EXPECT_TRUE(watcher->take_settled(t0 + 1h).empty());

  // Putting a frame back is new content again.
  write_file(frame_path(dir, "a", 3), 10);
  pump(*watcher, t0 + 2h);
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 2h + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].frames, "1-3");
}

TEST(FolderWatcherTest, FinishedSequenceSettlesWhileAnotherInTheSameFolderStillRenders) {
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  write_file(frame_path(dir, "done", 1), 10);
  pump(*watcher, t0);
  std::vector<SettledSequence> settled;
  for (int frame = 1; frame <= 4; ++frame) {
    const Clock::time_point now = t0 + frame * 3s;
    write_file(frame_path(dir, "rendering", frame), 10);
    pump(*watcher, now);
    for (SettledSequence& s : watcher->take_settled(now)) settled.push_back(std::move(s));
  }
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, dir.path() + "/done.####.exr");
}

TEST(FolderWatcherTest, MissingFolderIsAnError) {
  TempDir dir;
  WatchSpec spec = spec_for(dir);
  spec.dir = dir.file("absent");
  Result<std::unique_ptr<FolderWatcher>> watcher = FolderWatcher::create({spec}, t0);
  ASSERT_FALSE(watcher.has_value());
  EXPECT_EQ(watcher.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(watcher.error().reason,
            "watched folder " + dir.file("absent") + ": No such file or directory");

  spec.dir = "relative/path";
  watcher = FolderWatcher::create({spec}, t0);
  ASSERT_FALSE(watcher.has_value());
  EXPECT_EQ(watcher.error().code, ErrorCode::kInvalidArgument);

  write_file(dir.file("plain"), 1);
  spec.dir = dir.file("plain");
  watcher = FolderWatcher::create({spec}, t0);
  ASSERT_FALSE(watcher.has_value());
  EXPECT_EQ(watcher.error().reason, "watched folder " + dir.file("plain") + " is not a directory");
}

TEST(FolderWatcherTest, DeletedRootIsWatchedAgainWhenItComesBack) {
  TempDir dir;
  const std::string root = dir.file("drop");
  std::filesystem::create_directories(root + "/sub");
  WatchSpec spec = spec_for(dir);
  spec.dir = root;
  auto watcher = start({spec});
  ASSERT_TRUE(watcher);
  EXPECT_EQ(watcher->watched_folders(), 2u);

  std::filesystem::remove_all(root);
  pump(*watcher, t0);
  while (watcher->watched_folders() > 0) pump(*watcher, t0);
  ASSERT_TRUE(watcher->next_deadline().has_value());
  EXPECT_EQ(*watcher->next_deadline(), t0 + FolderWatcher::kRetryInterval);
  EXPECT_TRUE(watcher->take_settled(t0 + FolderWatcher::kRetryInterval).empty());  // still gone

  std::filesystem::create_directories(root);
  write_file(root + "/clip.mov", 5);
  const Clock::time_point back = t0 + 2 * FolderWatcher::kRetryInterval;
  EXPECT_TRUE(watcher->take_settled(back).empty());
  EXPECT_EQ(watcher->watched_folders(), 1u);
  std::vector<SettledSequence> settled = watcher->take_settled(back + 5s);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].pattern, root + "/clip.mov");
}

TEST(FolderWatcherTest, RescanFindsWhatLostEventsMissedAndReportsOnlyChanges) {
  TempDir dir;
  write_file(dir.file("kept.mov"), 10);
  set_age(dir.file("kept.mov"), 1h);
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  ASSERT_EQ(watcher->take_settled(t0).size(), 1u);

  // Changes whose events are not read: as after an overflow, only a rescan knows of them.
  std::filesystem::create_directories(dir.file("late"));
  write_file(dir.path() + "/late/b.0001.exr", 10);
  watcher->rescan(t0 + 10s);
  EXPECT_EQ(watcher->watched_folders(), 2u);
  std::vector<SettledSequence> settled = watcher->take_settled(t0 + 15s);
  ASSERT_EQ(settled.size(), 1u);  // kept.mov is unchanged
  EXPECT_EQ(settled[0].pattern, dir.path() + "/late/b.####.exr");

  // The stale events, read late, change nothing.
  watcher->on_readable(t0 + 20s);
  EXPECT_EQ(watcher->watched_folders(), 2u);
  EXPECT_TRUE(watcher->take_settled(t0 + 1h).empty());
}

// A burst of files larger than the inotify queue (fs.inotify.max_queued_events, 16384 by
// default) overflows it; the watcher rescans and every file is reported. Where the limit is
// raised past 100k the burst is capped at 50,000 files: it may then not overflow, and the test
// still checks that a burst loses nothing.
TEST(FolderWatcherTest, InotifyQueueOverflowRescansAndLosesNothing) {
  int max_queued = 0;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_queued;
  if (max_queued <= 0) max_queued = 16384;
  TempDir dir;
  auto watcher = start({spec_for(dir)});
  ASSERT_TRUE(watcher);
  // Single files (no digits in the names) are groups of their own, so a file whose events were
  // dropped is found only by the rescan. Each file queues IN_CREATE and IN_CLOSE_WRITE.
  const int files = std::min(max_queued / 2 + 100, 50'000);
  auto name = [](int i) {
    std::string text = "f_";
    for (int k = 0; k < 4; ++k, i /= 26) text += static_cast<char>('a' + i % 26);
    return text;
  };
  for (int i = 0; i < files; ++i) {
    const int fd = ::open(dir.file(name(i)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  pump(*watcher, t0);
  EXPECT_EQ(watcher->take_settled(t0 + 5s).size(), static_cast<size_t>(files));
}

}  // namespace
}  // namespace farmhand::daemon
