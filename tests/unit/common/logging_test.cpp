// Logging under journald: when stderr is the journal stream systemd names in
// JOURNAL_STREAM, lines carry a "<N>" syslog priority and no timestamp (journald
// stamps them and reads the level from the prefix); elsewhere they carry a timestamp.
#include "common/logging.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/temp_dir.h"
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::common {
namespace {

// Runs `log` with stderr sent to a fresh file (named as journald's stream when
// `journal`), and returns what was written.
template <typename Log>
std::string stderr_of(bool journal, Log log) {
  testing_support::TempDir dir("fh-logging");
  const std::string path = dir.file("stderr");
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  EXPECT_GE(file, 0);
  std::fflush(stderr);
  const int saved = ::dup(2);
  ::dup2(file, 2);

  struct stat st {};

  ::fstat(2, &st);
  if (journal) {
    const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    ::setenv("JOURNAL_STREAM", stream.c_str(), 1);
  } else {
    ::unsetenv("JOURNAL_STREAM");
  }
  log();
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(file);
  ::unsetenv("JOURNAL_STREAM");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(LoggingTest, UnderJournaldLinesCarryThePriorityAndNoTimestamp) {
  const std::string out = stderr_of(true, [] {
    setup_logging("info");
    logger("journal")->info("broker started");
    logger("journal")->warn("bad message dropped");
  });
  EXPECT_EQ(out, "<6>journal info: broker started\n<4>journal warning: bad message dropped\n");
}

TEST(LoggingTest, OnATerminalOrFileLinesStartWithATimestamp) {
  const std::string out = stderr_of(false, [] {
    setup_logging("info");
    logger("plain")->info("broker started");
  });
  // 2026-11-26T08:43:57.639 plain info: broker started
  ASSERT_GT(out.size(), 24u) << out;
  EXPECT_EQ(out[4], '-') << out;
  EXPECT_EQ(out[10], 'T') << out;
  EXPECT_NE(out.find(" plain info: broker started\n"), std::string::npos) << out;
  EXPECT_EQ(out.find('<'), std::string::npos) << out;
}

// Names, paths and reasons users chose reach the log inside messages: escaped,
// they cannot clear a terminal, and a newline cannot forge a second record (here
// one with journald's priority prefix "<3>").
TEST(LoggingTest, ARecordWithEscapeAndNewlineIsOneEscapedLine) {
  const std::string out = stderr_of(true, [] {
    setup_logging("info");
    logger("journal")->info("job accepted job=7 name={}", "a\x1b[2Jb\n<3>journal error: forged\r");
  });
  EXPECT_EQ(out,
            "<6>journal info: job accepted job=7 name=a\\x1b[2Jb\\x0a<3>journal error: "
            "forged\\x0d\n");
}

}  // namespace
}  // namespace farmhand::common
