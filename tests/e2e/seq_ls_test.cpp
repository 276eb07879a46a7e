// `farmhand seq ls` end to end: the real binary on real directories, no broker.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/local_cli.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace {

namespace fs = std::filesystem;
using farmhand::e2e::bin_dir;
using farmhand::e2e::CommandResult;
using farmhand::e2e::run_farmhand;
using farmhand::e2e::ScratchDir;

fs::path source_dir() {
  if (const char* dir = std::getenv("FARMHAND_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

// The README's table: usage errors 2, refusals 1, an unreachable broker 3.
TEST(CliExitCodesTest, UsageErrorsAreTwoWithOneLineAndAnUnreachableBrokerIsThree) {
  ScratchDir scratch;
  CommandResult unknown = run_farmhand({"frobnicate"}, scratch);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(unknown.err, "farmhand: unknown command 'frobnicate' (farmhand --help lists them)\n");
  const std::vector<std::string> bad_endpoints = {"bogus", "tcp://127.0.0.1", "tcp://127.0.0.1:0",
                                                  "tcp://127.0.0.1:99999", "ipc://"};
  for (const std::string& bad : bad_endpoints) {
    CommandResult run = run_farmhand({"--broker", bad, "ls"}, scratch);
    EXPECT_EQ(run.exit_code, 2) << bad << ": " << run.err;
    EXPECT_EQ(run.err, "farmhand: bad --broker value '" + bad +
                           "': expected tcp://HOST:PORT or ipc://PATH\n");
  }
  const std::string nobody = "ipc://" + (scratch.path() / "nobody.ipc").string();
  CommandResult unreachable = run_farmhand({"--broker", nobody, "--timeout", "0.2", "ls"}, scratch);
  EXPECT_EQ(unreachable.exit_code, 3) << unreachable.err;
  CommandResult no_change = run_farmhand({"--broker", nobody, "job", "set", "1"}, scratch);
  EXPECT_EQ(no_change.exit_code, 2) << no_change.err;
}

TEST(SeqLsTest, ListsTheBeachballSequencesLikeLsseq) {
  const fs::path beachball =
      source_dir() / ".." / "shared" / "data" / "openexr-images" / "Beachball";
  ASSERT_TRUE(fs::is_directory(beachball)) << "test data missing: " << beachball;
  ScratchDir scratch;
  const CommandResult run = run_farmhand({"seq", "ls", beachball.string()}, scratch);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(run.out,
            "README.rst\n"
            "multipart.####.exr  1-8  (8 frames)\n"
            "singlepart.####.exr  1-8  (8 frames)\n");
}

TEST(SeqLsTest, ShowsMissingFramesAndSingleFrames) {
  ScratchDir dir;
  for (int frame = 1001; frame <= 1100; ++frame) {
    if (frame == 1012 || (frame >= 1050 && frame <= 1052)) continue;
    dir.touch("sh010_comp_v003." + std::to_string(frame) + ".exr");
  }
  dir.touch("sh010_comp_v003.1001.jpg");
  ScratchDir scratch;
  const CommandResult run = run_farmhand({"seq", "ls", dir.path().string()}, scratch);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "sh010_comp_v003.####.exr  1001-1011,1013-1049,1053-1100  (96 frames)  missing "
            "1012,1050-1052\n"
            "sh010_comp_v003.####.jpg  1001  (1 frame)\n");
}

TEST(SeqLsTest, JsonGivesOneObjectPerSequence) {
  ScratchDir dir;
  for (int frame = 1; frame <= 10; ++frame) {
    if (frame != 4)
      dir.touch("plate_" + std::string(frame < 10 ? "000" : "00") + std::to_string(frame) + ".dpx");
  }
  dir.touch("notes.txt");
  ScratchDir scratch;
  const CommandResult run = run_farmhand({"seq", "ls", "--json", dir.path().string()}, scratch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json list = nlohmann::json::parse(run.out);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  const std::string dir_text = dir.path().string() + "/";

  const nlohmann::json& notes = list[0];
  EXPECT_EQ(notes["dir"], dir_text);
  EXPECT_EQ(notes["pattern"], "notes.txt");
  EXPECT_EQ(notes["padding"], 0);
  EXPECT_EQ(notes["count"], 0);
  EXPECT_TRUE(notes["first"].is_null());

  const nlohmann::json& plate = list[1];
  EXPECT_EQ(plate["dir"], dir_text);
  EXPECT_EQ(plate["pattern"], "plate_####.dpx");
  EXPECT_EQ(plate["frames"], "1-3,5-10");
  EXPECT_EQ(plate["first"], 1);
  EXPECT_EQ(plate["last"], 10);
  EXPECT_EQ(plate["count"], 9);
  EXPECT_EQ(plate["missing"], "4");
  EXPECT_EQ(plate["missing_count"], 1);
  EXPECT_EQ(plate["padding"], 4);
}

TEST(SeqLsTest, MissingDirectoryIsOneLineOnStderrAndAUsageError) {
  ScratchDir scratch;
  const std::string missing = (scratch.path() / "no-such-dir").string();
  const CommandResult run = run_farmhand({"seq", "ls", missing}, scratch);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "farmhand: cannot read " + missing + ": No such file or directory\n");
}

TEST(SeqLsTest, SeveralDirectoriesGetHeadingsAndABadOneFailsTheRun) {
  ScratchDir a;
  ScratchDir b;
  a.touch("a.0001.exr");
  a.touch("a.0002.exr");
  b.touch("b.txt");
  ScratchDir scratch;
  const std::string missing = (scratch.path() / "gone").string();
  const CommandResult run =
      run_farmhand({"seq", "ls", a.path().string(), missing, b.path().string()}, scratch);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.out, a.path().string() + ":\na.####.exr  1-2  (2 frames)\n\n" + b.path().string() +
                         ":\nb.txt\n");
  EXPECT_EQ(run.err, "farmhand: cannot read " + missing + ": No such file or directory\n");
}

TEST(SeqLsTest, RunsWithoutABroker) {
  ScratchDir dir;
  dir.touch("x.0001.exr");
  ScratchDir scratch;
  // Nothing listens here; seq ls must not care.
  const CommandResult run =
      run_farmhand({"seq", "ls", "--broker", "tcp://127.0.0.1:1", dir.path().string()}, scratch);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "x.####.exr  1  (1 frame)\n");
}

}  // namespace
