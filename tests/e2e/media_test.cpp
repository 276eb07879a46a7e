// End-to-end media jobs on the real binaries: thumbnails, proxies and review
// movies of the shared Beachball sequence, checked with the OIIO and FFmpeg
// command-line tools as oracles, and the Damaged/ corpus of fuzzed EXRs, which
// must end as task failures with a reason while the farm keeps working.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/oracles.h"
#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <signal.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class MediaE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(data_dir() + "/Beachball/singlepart.0001.exr")) {
      FAIL() << "test data missing: " << data_dir();
    }
  }
};

TEST_F(MediaE2ETest, ThumbnailProxiesAndMovieOfTheBeachballSequence) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string input = data_dir() + "/Beachball/singlepart.####.exr";

  auto thumb = cluster.submit(
      {"thumbnail", input, "-o", cluster.path("thumb.jpg"), "--size", "256", "--frame", "first"});
  auto proxies = cluster.submit({"convert", input, "-o", cluster.path("proxy/sb.####.jpg"),
                                 "--resize", "50%", "--chunk", "3"});
  auto movie = cluster.submit({"transcode", input, "-o", cluster.path("review.mov")});
  ASSERT_TRUE(thumb && proxies && movie) << cluster.last_cli();
  for (uint64_t job : {*thumb, *proxies, *movie}) {
    auto done = cluster.wait_for_final_state(job, 300s);
    ASSERT_TRUE(done) << "job " << job;
    EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  }

  // 2048x1556 displayed, 256 wide: 194.5 rows, rounded.
  std::string size = image_size(cluster.path("thumb.jpg"));
  EXPECT_TRUE(size == "256x195" || size == "256x194") << size;

  // Proxies: every frame, padding kept, half the display window.
  for (int frame = 1; frame <= 8; ++frame) {
    char name[64];
    std::snprintf(name, sizeof(name), "proxy/sb.%04d.jpg", frame);
    EXPECT_EQ(image_size(cluster.path(name)), "1024x778") << name;
  }
  auto proxy_status = cluster.status_json(*proxies);
  ASSERT_TRUE(proxy_status);
  EXPECT_EQ((*proxy_status)["job"]["task_count"], 3);

  // The movie: 8 frames at 24 fps, H.264 with BT.709 tags, readable by ffprobe.
  std::string probe =
      run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
          "stream=codec_name,nb_read_frames,r_frame_rate,pix_fmt,color_primaries,color_transfer,"
          "color_space -of default=noprint_wrappers=1 '" +
          cluster.path("review.mov") + "'");
  EXPECT_NE(probe.find("codec_name=h264"), std::string::npos) << probe;
  EXPECT_NE(probe.find("nb_read_frames=8"), std::string::npos) << probe;
  EXPECT_NE(probe.find("r_frame_rate=24/1"), std::string::npos) << probe;
  EXPECT_NE(probe.find("pix_fmt=yuv420p"), std::string::npos) << probe;
  EXPECT_NE(probe.find("color_primaries=bt709"), std::string::npos) << probe;
  EXPECT_NE(probe.find("color_space=bt709"), std::string::npos) << probe;
}

TEST_F(MediaE2ETest, BadMediaInputsAreRefusedAtSubmitWithOneLine) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  const std::string beach = data_dir() + "/Beachball/singlepart.####.exr";
  std::vector<Case> cases = {
      {{"thumbnail", data_dir() + "/Beachball/nothing.####.exr", "-o", cluster.path("t.jpg")},
       "no frames of"},
      {{"transcode", beach, "-o", cluster.path("m.mov"), "--codec", "x264"}, "unknown codec"},
      {{"convert", beach, "-o", cluster.path("p.jpg")}, "needs frame padding"},
      {{"thumbnail", beach, "-o", cluster.path("t.jpg"), "--frame", "99"}, "missing frame 99"},
      {{"convert", beach, "-o", cluster.path("p.####.jpg"), "--resize", "huge"}, "bad --resize"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = cluster.run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
  }
}

// A web review movie with sound, as a user submits it: VP9 in WebM with the
// sound as Opus, 2 frames late; the sound is read, never written over.
TEST_F(MediaE2ETest, AWebMovieWithSoundIsSubmittedFromTheCli) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string input = data_dir() + "/Beachball/singlepart.####.exr";
  const std::string sound = cluster.path("dialogue.wav");
  ASSERT_EQ(run("ffmpeg -v error -y -f lavfi -i 'sine=frequency=440:duration=1' '" + sound +
                "' && echo made"),
            "made\n");
  auto movie = cluster.submit({"transcode", input, "-o", cluster.path("review.webm"), "--codec",
                               "vp9", "--audio", sound, "--audio-offset", "2"});
  ASSERT_TRUE(movie) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*movie, 300s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  const std::string streams =
      run("ffprobe -v error -count_frames -show_entries stream=codec_type,codec_name,"
          "nb_read_frames -of compact=p=0 '" +
          cluster.path("review.webm") + "'");
  EXPECT_NE(streams.find("codec_name=vp9|codec_type=video|nb_read_frames=8"), std::string::npos)
      << streams;
  EXPECT_NE(streams.find("codec_name=opus|codec_type=audio"), std::string::npos) << streams;

  // A contact sheet of every other frame: one task, four cells in two columns.
  auto sheet = cluster.submit({"contactsheet", input, "-o", cluster.path("sheet.jpg"), "--every",
                               "2", "--columns", "2", "--size", "200"});
  ASSERT_TRUE(sheet) << cluster.last_cli();
  auto sheet_done = cluster.wait_for_final_state(*sheet, 300s);
  ASSERT_TRUE(sheet_done);
  EXPECT_EQ((*sheet_done)["job"]["state"], "succeeded") << sheet_done->dump();
  EXPECT_EQ((*sheet_done)["job"]["task_count"], 1);
  // 2 x (200 + 5) + 5 wide; 28 (title) + 5 + 2 x (152 + 21 + 5) high (image_ops.h).
  EXPECT_EQ(image_size(cluster.path("sheet.jpg")), "415x389");

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  for (const Case& c : std::vector<Case>{
           {{"transcode", input, "-o", cluster.path("m.mov"), "--codec", "vp9"},
            "codec vp9 cannot go into " + cluster.path("m.mov") + " (use .webm or .mp4)"},
           {{"transcode", input, "-o", cluster.path("m.mp4"), "--audio", sound, "--audio-offset",
             "soon"},
            "bad --audio-offset 'soon'"},
           {{"transcode", input, "-o", cluster.path("m.mp4"), "--audio-offset", "3"},
            "--audio-offset without --audio"},
           {{"contactsheet", input, "-o", cluster.path("s.jpg"), "--every", "0"},
            "bad --every '0' (1-1000000)"},
           {{"contactsheet", input, "-o", cluster.path("s.exr")},
            "a contact sheet is a display image"},
           {{"transcode", input, "-o", cluster.path("dialogue.mov"), "--audio",
             cluster.path("dialogue.mov")},
            "is the job's sound: a job never overwrites what it reads"},
       }) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = cluster.run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
  }
}

// Dailies as a supervisor wants them, from the CLI: a slate first, the shot
// and version and the timecode burnt in; the values come from --meta.
TEST_F(MediaE2ETest, ASlateAndBurnInsFromTheCliMakeTheMovieOneFrameLonger) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string input = data_dir() + "/Beachball/singlepart.####.exr";
  auto movie =
      cluster.submit({"transcode", input, "-o", cluster.path("dailies.mov"), "--slate", "--burn-in",
                      "{shot} v{version}", "--burn-in", "top-right={timecode}", "--meta",
                      "shot=sh010", "--meta", "version=3", "--meta", "artist=ana"});
  ASSERT_TRUE(movie) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*movie, 300s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  const std::string frames =
      run("ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames "
          "-of csv=p=0 '" +
          cluster.path("dailies.mov") + "'");
  EXPECT_EQ(frames, "9\n") << "8 pictures and the slate";

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  for (const Case& c : std::vector<Case>{
           {{"transcode", input, "-o", cluster.path("m.mov"), "--burn-in", "{shot}"},
            "burn-in '{shot}': no value for {shot} (give it with --meta shot=..."},
           {{"transcode", input, "-o", cluster.path("m.mov"), "--burn-in", "{frame"},
            "burn-in '{frame': a '{' without its '}'"},
           {{"transcode", input, "-o", cluster.path("m.mov"), "--meta", "shot"},
            "--meta takes KEY=VALUE"},
       }) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = cluster.run_cli(args);
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
  }
}

// Which pictures of a movie are key frames.
std::set<size_t> key_pictures(const std::string& movie) {
  const std::string flags =
      run("ffprobe -v error -select_streams v:0 -show_entries packet=flags -of csv=p=0 '" + movie +
          "'");
  std::set<size_t> keys;
  size_t index = 0;
  for (size_t at = 0; at < flags.size();) {
    const size_t end = flags.find('\n', at);
    if (flags[at] == 'K') keys.insert(index);
    ++index;
    at = end == std::string::npos ? flags.size() : end + 1;
  }
  return keys;
}

// Each segment opens on a key frame (x264 adds its own at scene cuts: the
// Beachball loop restarts every 8 frames).
void expect_key_frames_at(const std::string& movie, const std::vector<size_t>& starts) {
  const std::set<size_t> keys = key_pictures(movie);
  for (size_t start : starts) EXPECT_EQ(keys.count(start), 1u) << "picture " << start;
}

std::vector<std::string> segment_folders(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().find(".segments.") != std::string::npos) {
      found.push_back(entry.path().string());
    }
  }
  return found;
}

// A long movie on several workers: --segments 4 makes a job of four
// whole-GOP segment tasks and a job, after it, that joins them into the one
// movie: every picture, a key frame where each segment starts, no folder left.
TEST_F(MediaE2ETest, AMovieInSegmentsIsEncodedByTwoWorkersAndJoinedIntoOneFile) {
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  link_plates(cluster.path("plates"), 96);
  const std::string movie = cluster.path("out/review.mp4");
  auto submitted = cluster.cli_json({"submit", "transcode", cluster.path("plates/plate.####.exr"),
                                     "-o", movie, "--segments", "4", "--name", "review"});
  ASSERT_TRUE(submitted) << cluster.last_cli();
  // The reply names both jobs: the one that encodes the segments, and this one, the join.
  const auto join = (*submitted)["job_id"].get<uint64_t>();
  EXPECT_EQ((*submitted)["tasks"], 1) << submitted->dump();
  EXPECT_EQ((*submitted)["segments"], 4) << submitted->dump();
  auto done = cluster.wait_for_final_state(join, 300s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  ASSERT_EQ((*done)["job"]["after"].size(), 1u) << done->dump();
  EXPECT_EQ((*done)["job"]["after"][0], (*submitted)["segments_job"]);
  auto segments = cluster.status_json((*done)["job"]["after"][0].get<uint64_t>(), {"--tasks"});
  ASSERT_TRUE(segments) << cluster.last_cli();
  EXPECT_EQ((*segments)["job"]["name"], "review [segments]");
  EXPECT_EQ((*segments)["job"]["state"], "succeeded");
  EXPECT_EQ((*segments)["job"]["task_count"], 4)
      << "96 frames in segments of 24, at least a GOP (30) each";
  EXPECT_EQ(run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                "stream=nb_read_frames,codec_name -of csv=p=0 '" +
                movie + "'"),
            "h264,96\n");
  expect_key_frames_at(movie, {0, 30, 60, 90});
  EXPECT_TRUE(segment_folders(cluster.path("out")).empty());

  // Paused and cancelled by the id the user has, the join: its segments too.
  auto again = cluster.cli_json({"submit", "transcode", cluster.path("plates/plate.####.exr"), "-o",
                                 cluster.path("out/again.mp4"), "--segments", "3"});
  ASSERT_TRUE(again) << cluster.last_cli();
  const std::string again_id = std::to_string((*again)["job_id"].get<uint64_t>());
  const uint64_t again_segments = (*again)["segments_job"].get<uint64_t>();
  ASSERT_EQ(cluster.run_cli({"pause", again_id}).exit_code, 0) << cluster.last_cli();
  auto paused = cluster.status_json(again_segments);
  ASSERT_TRUE(paused) << cluster.last_cli();
  EXPECT_EQ((*paused)["job"]["state"], "paused") << paused->dump();
  ASSERT_EQ(cluster.run_cli({"cancel", again_id}).exit_code, 0) << cluster.last_cli();
  auto cancelled = cluster.status_json(again_segments);
  ASSERT_TRUE(cancelled) << cluster.last_cli();
  EXPECT_EQ((*cancelled)["job"]["state"], "cancelled") << cancelled->dump();

  for (const char* bad : {"0", "four", "10001"}) {
    CliResult r = cluster.run_cli({"submit", "transcode", cluster.path("plates/plate.####.exr"),
                                   "-o", cluster.path("m.mp4"), "--segments", bad});
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(std::string("bad --segments '") + bad + "' (1 to 10000)"),
              std::string::npos)
        << describe(r);
  }
}

// A movie that follows a render frame by frame streams: its first segment is
// encoded while the render still runs, and the movie is whole once the last
// frames are rendered.
TEST_F(MediaE2ETest, AMovieAfterARenderFrameByFrameIsEncodedWhileTheRenderRuns) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 4;
  // Frames after 60 wait for the gate file: the render is still running.
  options.commands_yaml =
      "  render:\n"
      "    argv: [/bin/sh, -c, 'if [ \"$1\" -gt 60 ]; then while [ ! -e \"$4\" ]; do sleep 0.05; "
      "done; fi; cp \"$2\" \"$3\"', sh, \"{frame}\", \"{plates}/plate.{frame:04}.exr\", "
      "\"{shots}/shot.{frame:04}.exr\", \"{gate}\"]\n"
      "    params:\n"
      "      plates: { pattern: '^[A-Za-z0-9_./-]+$' }\n"
      "      shots: { pattern: '^[A-Za-z0-9_./-]+$' }\n"
      "      gate: { pattern: '^[A-Za-z0-9_./-]+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  link_plates(cluster.path("plates"), 96);
  fs::create_directories(cluster.path("shots"));
  auto render =
      cluster.submit({"command", "render", "--frames", "1-96", "--chunk", "10", "--param",
                      "plates=" + cluster.path("plates"), "--param",
                      "shots=" + cluster.path("shots"), "--param", "gate=" + cluster.path("gate")});
  ASSERT_TRUE(render) << cluster.last_cli();
  const std::string movie = cluster.path("shots/review.mov");
  auto join = cluster.submit({"transcode", cluster.path("shots/shot.1-96####.exr"), "-o", movie,
                              "--after-frames", std::to_string(*render)});
  ASSERT_TRUE(join) << cluster.last_cli();
  auto joined = cluster.status_json(*join);
  ASSERT_TRUE(joined) << cluster.last_cli();
  ASSERT_EQ((*joined)["job"]["after"].size(), 1u) << joined->dump();
  const uint64_t segments = (*joined)["job"]["after"][0].get<uint64_t>();
  // The first segment (frames 1-30) is encoded while the render waits at frame 61.
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = cluster.status_json(segments, {"--tasks"});
        return s && (*s)["tasks"][0]["state"] == "succeeded";
      },
      300s))
      << "the first segment never ran while the render ran";
  auto still = cluster.status_json(*render);
  ASSERT_TRUE(still) << cluster.last_cli();
  EXPECT_EQ((*still)["job"]["state"], "running") << still->dump();
  EXPECT_FALSE(fs::exists(movie));
  std::ofstream(cluster.path("gate")).put('\n');
  auto done = cluster.wait_for_final_state(*join, 300s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  EXPECT_EQ(run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                "stream=nb_read_frames -of csv=p=0 '" +
                movie + "'"),
            "96\n");
  expect_key_frames_at(movie, {0, 30, 60, 90});  // streaming segments are one GOP
}

TEST_F(MediaE2ETest, AllowedRootsKeepMediaJobsAndPublishesInsideThem) {
  // One root, a fresh directory: the shared test data and the cluster's own
  // directory are outside it.
  testing_support::TempDir root("fh-root");
  const std::string shots = root.path();
  ClusterOptions options;
  options.local_workers = 1;
  options.broker_yaml = "  allowed_roots: [" + shots + "]\n";
  Cluster farm(options);
  ASSERT_TRUE(farm.start());
  fs::copy_file(data_dir() + "/Beachball/singlepart.0001.exr", shots + "/sb.0001.exr");
  fs::create_directory_symlink(data_dir(), shots + "/escape");

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  const std::vector<Case> refused = {
      {{"submit", "thumbnail", data_dir() + "/Beachball/singlepart.####.exr", "-o",
        shots + "/t.jpg"},
       "input " + data_dir() + "/Beachball/singlepart.####.exr is outside the allowed roots"},
      {{"submit", "thumbnail", shots + "/sb.####.exr", "-o", farm.dir() + "/t.jpg"},
       "output " + farm.dir() + "/t.jpg is outside the allowed roots"},
      {{"submit", "thumbnail", shots + "/../../etc/passwd", "-o", shots + "/t.jpg"},
       "is outside the allowed roots"},
      {{"submit", "convert", shots + "/escape/Beachball/singlepart.####.exr", "-o",
        shots + "/p.####.jpg"},
       "is outside the allowed roots"},
      {{"publish", data_dir() + "/Beachball"}, "path " + data_dir() + "/Beachball is outside"},
  };
  for (const auto& c : refused) {
    CliResult r = farm.run_cli(c.args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
  }
  auto jobs = farm.cli_json({"ls"});
  ASSERT_TRUE(jobs) << farm.last_cli();
  EXPECT_TRUE(jobs->empty()) << *jobs;

  auto inside = farm.submit({"thumbnail", shots + "/sb.####.exr", "-o", shots + "/thumb.jpg"});
  ASSERT_TRUE(inside) << farm.last_cli();
  auto done = farm.wait_for_final_state(*inside, 120s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  EXPECT_EQ(image_size(shots + "/thumb.jpg"), "256x195");
}

// Every file of the fuzzed corpus gets a thumbnail job. Debian's OpenEXR aborts
// or runs away on some: each must end as a task of its own, succeeded or
// failed with one classified line, while the workers stay registered and a
// good job afterwards still succeeds.
TEST_F(MediaE2ETest, DamagedCorpusEndsInClassifiedFailuresAndTheFarmKeepsWorking) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 2;
  options.default_max_attempts = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  std::map<uint64_t, std::string> jobs;
  for (const auto& entry : fs::directory_iterator(data_dir() + "/Damaged")) {
    if (!entry.is_regular_file()) continue;
    std::string name = entry.path().filename().string();
    auto job = cluster.submit({"thumbnail", entry.path().string(), "-o",
                               cluster.path("damaged/" + name + ".jpg"), "--timeout", "60"});
    ASSERT_TRUE(job) << name << ": " << cluster.last_cli();
    jobs[*job] = name;
  }
  ASSERT_GT(jobs.size(), 180u);

  std::map<std::string, int> outcomes;
  for (const auto& [job, name] : jobs) {
    auto done = cluster.wait_for_final_state(job, 600s);
    ASSERT_TRUE(done) << name << " never finished";
    std::string state = (*done)["job"]["state"];
    if (state == "succeeded") {
      outcomes["succeeded"]++;
      continue;
    }
    ASSERT_EQ(state, "failed") << name << ": " << done->dump();
    ASSERT_FALSE((*done)["last_errors"].empty()) << name;
    std::string error = (*done)["last_errors"][0]["error"];
    EXPECT_FALSE(error.empty()) << name;
    EXPECT_EQ(error.find('\n'), std::string::npos) << name << ": " << error;
    EXPECT_LT(error.size(), 400u) << name << ": " << error;
    std::string kind = error.substr(0, error.find_first_of(":(0123456789"));
    outcomes[kind]++;
  }
  for (const auto& [kind, count] : outcomes) {
    std::printf("damaged corpus: %4d  %s\n", count, kind.c_str());
  }

  auto alive = cluster.alive_workers();
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->size(), 2u);
  auto good = cluster.submit({"thumbnail", data_dir() + "/Beachball/singlepart.####.exr", "-o",
                              cluster.path("after.jpg")});
  ASSERT_TRUE(good);
  auto done = cluster.wait_for_final_state(*good, 120s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "succeeded");
}

// ------------------------------------------------------------------ outputs never destroy a source

// Three Beachball frames copied into `dir`/plates, for jobs that must not touch them.
void copy_plates(const std::string& dir) {
  fs::create_directories(dir + "/plates");
  for (int frame = 1; frame <= 3; ++frame) {
    char source[48];
    char target[48];
    std::snprintf(source, sizeof(source), "/Beachball/singlepart.%04d.exr", frame);
    std::snprintf(target, sizeof(target), "/plates/sb.%04d.exr", frame);
    fs::copy_file(data_dir() + source, dir + target);
  }
}

std::map<std::string, std::string> contents_of(const std::string& dir) {
  std::map<std::string, std::string> contents;
  for (const auto& entry : fs::directory_iterator(dir)) {
    contents[entry.path().filename().string()] = read_file(entry.path().string());
  }
  return contents;
}

TEST_F(MediaE2ETest, AnOutputThatIsItsInputIsRefusedAtSubmitForEveryKind) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  copy_plates(cluster.dir());
  const std::string plates = cluster.path("plates");
  fs::create_hard_link(plates + "/sb.0002.exr", plates + "/review.mov");
  const auto before = contents_of(plates);

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  const std::string never = ": a job never overwrites what it reads";
  const std::vector<Case> cases = {
      {{"thumbnail", plates + "/sb.0001.exr", "-o", plates + "/sb.0001.exr"},
       "output " + plates + "/sb.0001.exr is the job's input" + never},
      {{"convert", plates + "/sb.####.exr", "-o", plates + "/sb.####.exr", "--format", "exr"},
       "output " + plates + "/sb.0001.exr is the job's input frame 1" + never},
      {{"convert", plates + "/sb.####.exr", "-o", plates + "/../plates/sb.#.exr"},
       "output " + plates + "/../plates/sb.0001.exr is the job's input frame 1" + never},
      {{"transcode", plates + "/sb.####.exr", "-o", plates + "/review.mov"},
       "output " + plates + "/review.mov is the job's input frame 2" + never},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = cluster.run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
  }
  auto jobs = cluster.cli_json({"ls"});
  ASSERT_TRUE(jobs) << cluster.last_cli();
  EXPECT_TRUE(jobs->empty()) << *jobs;
  EXPECT_EQ(contents_of(plates), before);
}

TEST_F(MediaE2ETest, ARuleWhoseOutputIsItsInputIsRefusedAndAPublishMakesNoSuchJob) {
  ClusterOptions options;
  options.local_workers = 1;
  // Through a symlink the check of the config cannot see: the publish must.
  options.extra_yaml =
      "rules:\n"
      "  - name: regrade\n"
      "    match: {kind: sequence}\n"
      "    jobs:\n"
      "      linear: { kind: convert, output: \"{dir}/same/{name}.{frame}.{ext}\", format: exr }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  const std::string bad = cluster.path("bad.yaml");
  {
    std::string config = read_file(cluster.config_path());
    config.replace(config.find("{dir}/same/"), 11, "{dir}/");
    std::ofstream(bad) << config;
  }
  CliResult checked = cluster.run_binary("farmhandd", {"--check-config", bad});
  EXPECT_NE(checked.exit_code, 0) << describe(checked);
  EXPECT_NE(checked.err.find(bad + ":"), std::string::npos) << describe(checked);
  EXPECT_NE(checked.err.find("rule 'regrade' job 'linear': output "), std::string::npos)
      << describe(checked);
  EXPECT_NE(checked.err.find("a job never overwrites what it reads"), std::string::npos)
      << describe(checked);
  CliResult good = cluster.run_binary("farmhandd", {"--check-config", cluster.config_path()});
  EXPECT_EQ(good.exit_code, 0) << describe(good);

  copy_plates(cluster.dir());
  const std::string plates = cluster.path("plates");
  fs::create_directory_symlink(".", plates + "/same");
  const auto before = contents_of(plates);
  auto reply = cluster.cli_json({"publish", plates + "/sb.####.exr"});
  ASSERT_TRUE(reply) << cluster.last_cli();
  EXPECT_TRUE((*reply)["job_ids"].empty()) << reply->dump();
  EXPECT_NE(reply->dump().find("is the job's input frame 1: a job never overwrites what it reads"),
            std::string::npos)
      << reply->dump();
  auto jobs = cluster.cli_json({"ls"});
  ASSERT_TRUE(jobs) << cluster.last_cli();
  EXPECT_TRUE(jobs->empty()) << *jobs;
  EXPECT_EQ(contents_of(plates), before);
}

TEST_F(MediaE2ETest, ADirectorySwappedForASymlinkAfterSubmitFailsTheTaskAndWritesNothingThere) {
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {StandaloneWorker("w1")};
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  copy_plates(cluster.dir());
  testing_support::TempDir elsewhere("fh-elsewhere");
  fs::create_directory(elsewhere.file("proxy"));
  const std::string out = cluster.path("out");
  fs::create_directories(out + "/proxy");

  // The worker is frozen: nothing of the job runs before the swap.
  ASSERT_EQ(::kill(cluster.worker_pid(0), SIGSTOP), 0);
  auto job = cluster.submit({"convert", cluster.path("plates/sb.####.exr"), "-o",
                             out + "/proxy/sb.####.jpg", "--resize", "10%"});
  fs::rename(out, cluster.path("out.before"));
  fs::create_directory_symlink(elsewhere.path(), out);
  ASSERT_EQ(::kill(cluster.worker_pid(0), SIGCONT), 0);
  ASSERT_TRUE(job) << cluster.last_cli();

  auto done = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(done);
  EXPECT_EQ((*done)["job"]["state"], "failed") << done->dump();
  ASSERT_FALSE((*done)["last_errors"].empty()) << done->dump();
  EXPECT_EQ((*done)["last_errors"][0]["error"],
            "cannot write " + out + "/proxy/sb.0001.jpg: " + out + " is a symlink")
      << done->dump();
  EXPECT_TRUE(elsewhere.entries() == std::vector<std::string>{"proxy"});
  EXPECT_TRUE(fs::is_empty(elsewhere.file("proxy")));
}

}  // namespace
}  // namespace farmhand::e2e
