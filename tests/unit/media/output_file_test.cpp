// OutputFile: outputs go beneath their root without following a symlink
// planted after submit, never over a file the task reads, and temporaries of
// killed media processes are swept (workers/media/output_file.h).
#include "workers/media/output_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::media {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using TempDir = farmhand::testing_support::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

Result<void> write_text(const std::string& output, const OutputPlace& place,
                        const std::string& text, const std::vector<std::string>& reads = {}) {
  auto file = OutputFile::create(output, place);
  if (!file) return fail(file.error());
  spit(file->write_path(), text);
  return file->commit(reads);
}

// ".farmhand-tmp.HOST." of this host.
std::string host_prefix() {
  std::string prefix = temp_prefix();
  prefix.pop_back();
  return prefix.substr(0, prefix.rfind('.') + 1);
}

TEST(OutputFileTest, WritesBeneathItsRootCreatingMissingDirectoriesAndLeavesNoTemporary) {
  TempDir root("fh-root");
  const std::string output = root.file("shot/proxy/a.jpg");
  ASSERT_TRUE(write_text(output, {root.path(), root.file("shot/proxy")}, "pixels"));
  EXPECT_EQ(slurp(output), "pixels");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root.file("shot/proxy"))) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"a.jpg"});
}

TEST(OutputFileTest, ADirectoryReplacedByASymlinkAfterSubmitFailsAndWritesNothingOutside) {
  TempDir root("fh-root");
  TempDir outside("fh-outside");
  fs::create_directories(root.file("shot/proxy"));
  // At submit the broker resolved shot/proxy; then shot is swapped for a link.
  fs::rename(root.file("shot"), root.file("shot.old"));
  fs::create_directory_symlink(outside.path(), root.file("shot"));
  fs::create_directory(outside.file("proxy"));
  const std::string output = root.file("shot/proxy/a.jpg");
  auto written = write_text(output, {root.path(), root.file("shot/proxy")}, "pixels");
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().reason,
            "cannot write " + output + ": " + root.file("shot") + " is a symlink");
  EXPECT_TRUE(fs::is_empty(outside.file("proxy")));
}

TEST(OutputFileTest, ATargetThatIsAnInputIsRefusedAndKeepsItsBytes) {
  TempDir dir;
  spit(dir.file("plate.exr"), "source");
  fs::create_hard_link(dir.file("plate.exr"), dir.file("thumb.jpg"));
  auto written = write_text(dir.file("thumb.jpg"), {dir.path(), dir.path()}, "pixels",
                            {dir.file("plate.exr")});
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().reason, "output " + dir.file("thumb.jpg") + " is the task's input " +
                                        dir.file("plate.exr") +
                                        ": a job never overwrites what it reads");
  EXPECT_EQ(slurp(dir.file("plate.exr")), "source");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"plate.exr", "thumb.jpg"}));
}

TEST(OutputFileTest, StaleTemporariesOfDeadProcessesAreSweptAndALiveSiblingsAreKept) {
  TempDir dir;
  // A dead media process: a child that has exited.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  // A live one: a child named like farmhand-media, which says when it is.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t live = ::fork();
  if (live == 0) {
    ::prctl(PR_SET_NAME, "farmhand-media");
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(live, 0);
  char byte = 0;
  const bool named = ::read(ready[0], &byte, 1) == 1;
  ::close(ready[0]);
  ::close(ready[1]);
  const std::string stale = host_prefix() + std::to_string(dead) + ".0.a.jpg";
  const std::string kept = host_prefix() + std::to_string(live) + ".0.b.jpg";
  const std::string other_host = ".farmhand-tmp.00000000." + std::to_string(dead) + ".0.c.jpg";
  for (const std::string& name : {stale, kept, other_host}) spit(dir.file(name), "partial");
  auto written = write_text(dir.file("d.jpg"), {dir.path(), dir.path()}, "pixels");
  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
  ASSERT_TRUE(named);
  ASSERT_TRUE(written) << written.error().reason;
  EXPECT_FALSE(fs::exists(dir.file(stale)));
  EXPECT_TRUE(fs::exists(dir.file(kept)));
  EXPECT_TRUE(fs::exists(dir.file(other_host))) << "another host's pids mean nothing here";
}

TEST(OutputFileTest, AnUncommittedOutputLeavesNoTemporary) {
  TempDir dir;
  {
    auto file = OutputFile::create(dir.file("a.jpg"), {dir.path(), dir.path()});
    ASSERT_TRUE(file);
    spit(file->write_path(), "partial");
  }
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace farmhand::media
