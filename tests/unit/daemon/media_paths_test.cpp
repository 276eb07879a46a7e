// broker.allowed_roots: which media and publish paths the broker accepts
// (daemon/media_jobs.h, check_allowed_root and check_media_paths).
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "media.pb.h"
#include "tests/support/temp_dir.h"
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/media_jobs.h"

namespace farmhand::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_support::TempDir;

bool allowed(const std::string& path, const std::vector<std::string>& roots) {
  return check_allowed_root("input", path, roots).has_value();
}

TEST(MediaPathsTest, NoRootsAllowsAnyPath) {
  EXPECT_TRUE(allowed("/etc/passwd", {}));
}

TEST(MediaPathsTest, PathsUnderARootAreAllowedWholeComponentsOnly) {
  const std::vector<std::string> roots = {"/mnt/projects", "/mnt/renders"};
  EXPECT_TRUE(allowed("/mnt/projects", roots));
  EXPECT_TRUE(allowed("/mnt/projects/sh010/comp.####.exr", roots));
  EXPECT_TRUE(allowed("/mnt/renders/./sh010/../sh020/x.exr", roots));
  EXPECT_FALSE(allowed("/mnt/projectsX/sh010/comp.exr", roots)) << "a prefix is not a parent";
  EXPECT_FALSE(allowed("/mnt/projects/../secrets/x.exr", roots));
  EXPECT_FALSE(allowed("/mnt", roots));
  EXPECT_FALSE(allowed("/etc/passwd", roots));
}

TEST(MediaPathsTest, RefusalNamesTheFieldThePathAndTheRoots) {
  auto refused = check_allowed_root("output", "/etc/x.jpg", {"/mnt/a", "/mnt/b"});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().reason,
            "output /etc/x.jpg is outside the allowed roots (/mnt/a, /mnt/b)");
}

TEST(MediaPathsTest, SymlinkInsideARootThatLeadsOutIsRefused) {
  TempDir root("fh-roots");
  TempDir outside("fh-outside");
  fs::create_directory_symlink(outside.path(), root.file("escape"));
  fs::create_directory(root.file("shots"));
  EXPECT_TRUE(allowed(root.file("shots/comp.####.exr"), {root.path()}));
  EXPECT_FALSE(allowed(root.file("escape/comp.####.exr"), {root.path()}));
  EXPECT_FALSE(allowed(root.file("escape/new/dir/out.jpg"), {root.path()}));
}

TEST(MediaPathsTest, ARootThatIsItselfASymlinkAllowsItsTarget) {
  TempDir real("fh-real");
  TempDir links("fh-links");
  const std::string mount = links.file("projects");  // /.../projects -> the real directory
  fs::create_directory_symlink(real.path(), mount);
  fs::create_directory(real.file("sh010"));
  EXPECT_TRUE(allowed(mount + "/sh010/comp.exr", {mount}));
}

TEST(MediaPathsTest, MediaJobInputOutputAndOcioAreEachChecked) {
  wire::JobSpec spec;
  spec.set_kind("thumbnail");
  (*spec.mutable_params())["input"] = "/mnt/projects/sh010/comp.####.exr";
  (*spec.mutable_params())["output"] = "/mnt/projects/sh010/thumb.jpg";
  const std::vector<std::string> roots = {"/mnt/projects"};
  EXPECT_TRUE(check_media_paths(spec, roots).has_value());
  (*spec.mutable_params())["ocio"] = "/etc/ocio/config.ocio";
  auto ocio = check_media_paths(spec, roots);
  ASSERT_FALSE(ocio.has_value());
  EXPECT_THAT(ocio.error().reason, HasSubstr("ocio /etc/ocio/config.ocio is outside"));
  spec.mutable_params()->erase("ocio");
  (*spec.mutable_params())["output"] = "/tmp/thumb.jpg";
  auto output = check_media_paths(spec, roots);
  ASSERT_FALSE(output.has_value());
  EXPECT_THAT(output.error().reason, HasSubstr("output /tmp/thumb.jpg is outside"));
}

// ------------------------------------------------------------------ output == input

wire::JobSpec media_job(const std::string& kind, const std::string& input,
                        const std::string& output,
                        const std::map<std::string, std::string>& more = {}) {
  wire::JobSpec spec;
  spec.set_kind(kind);
  (*spec.mutable_params())["input"] = input;
  (*spec.mutable_params())["output"] = output;
  for (const auto& [key, value] : more) (*spec.mutable_params())[key] = value;
  return spec;
}

// prepare_media_job, then check_media_paths: what the broker does at submit.
Result<void> submit_check(wire::JobSpec& spec, const std::vector<std::string>& roots = {}) {
  if (auto ok = prepare_media_job(spec); !ok) return ok;
  return check_media_paths(spec, roots);
}

std::string refusal(wire::JobSpec spec) {
  auto ok = submit_check(spec);
  return ok ? "accepted" : ok.error().reason;
}

TEST(MediaPathsTest, ConvertOntoItsOwnFramesIsRefusedNamingTheFrame) {
  EXPECT_EQ(refusal(media_job("convert", "/p/shot.1001-1003#.exr", "/p/shot.####.exr",
                              {{"format", "exr"}})),
            "output /p/shot.1001.exr is the job's input frame 1001: a job never overwrites what "
            "it reads");
}

TEST(MediaPathsTest, PatternsSpelledDifferentlyThatNameTheSameFilesAreRefused) {
  // One frame's output is another frame's input: still a frame the job reads.
  EXPECT_EQ(refusal(media_job("convert", "/p/shot.1001-1003#.exr", "/p/./x/../shot.@.exr")),
            "output /p/./x/../shot.1001.exr is the job's input frame 1001: a job never "
            "overwrites what it reads");
  EXPECT_EQ(refusal(media_job("convert", "/p/shot.1001-1003#.exr", "/p/shot.####.jpg")),
            "accepted");
}

TEST(MediaPathsTest, ThumbnailOntoItsInputIsRefused) {
  EXPECT_EQ(refusal(media_job("thumbnail", "/p/t.exr", "/p/t.exr")),
            "output /p/t.exr is the job's input: a job never overwrites what it reads");
}

TEST(MediaPathsTest, AnOutputDirectoryThatIsASymlinkToTheInputsIsRefused) {
  TempDir dir;
  fs::create_directory(dir.file("plates"));
  for (const char* name : {"sh.0001.exr", "sh.0002.exr"}) {
    std::ofstream(dir.file(std::string("plates/") + name)) << "x";
  }
  fs::create_directory_symlink(dir.file("plates"), dir.file("linked"));
  auto spec = media_job("convert", dir.file("plates/sh.####.exr"), dir.file("linked/sh.####.exr"));
  EXPECT_EQ(refusal(spec), "output " + dir.file("linked/sh.0001.exr") +
                               " is the job's input frame 1: a job never overwrites what it reads");
}

TEST(MediaPathsTest, AnOutputThatIsAHardLinkOfAnInputFrameOrTheOcioConfigIsRefused) {
  TempDir dir;
  for (const char* name : {"sh.0001.exr", "sh.0002.exr", "config.ocio"}) {
    std::ofstream(dir.file(name)) << "x";
  }
  fs::create_directory(dir.file("review"));
  fs::create_hard_link(dir.file("sh.0002.exr"), dir.file("review/sh.mov"));
  EXPECT_EQ(refusal(media_job("transcode", dir.file("sh.####.exr"), dir.file("review/sh.mov"))),
            "output " + dir.file("review/sh.mov") +
                " is the job's input frame 2: a job never overwrites what it reads");
  fs::create_hard_link(dir.file("config.ocio"), dir.file("review/t.jpg"));
  EXPECT_EQ(refusal(media_job("thumbnail", dir.file("sh.####.exr"), dir.file("review/t.jpg"),
                              {{"ocio", dir.file("config.ocio")}})),
            "output " + dir.file("review/t.jpg") +
                " is the job's OCIO config: a job never overwrites what it reads");
}

TEST(MediaPathsTest, OutputsThatAreDirectoriesOrUnwritableFormatsAreRefused) {
  TempDir dir;
  fs::create_directory(dir.file("t.jpg"));
  EXPECT_EQ(refusal(media_job("thumbnail", "/p/t.exr", dir.file("t.jpg"))),
            "output " + dir.file("t.jpg") + " is a directory");
  EXPECT_EQ(refusal(media_job("thumbnail", "/p/t.exr", "/p/thumbs/")),
            "output /p/thumbs/ is a directory");
  EXPECT_EQ(refusal(media_job("thumbnail", "/p/t.exr", "/p/t.gif")),
            "output /p/t.gif: cannot write .gif images (jpg, png, tif, dpx, exr)");
  EXPECT_EQ(refusal(media_job("convert", "/p/s.1-3#.exr", "/p/s.####.webp")),
            "output /p/s.####.webp: cannot write .webp images (jpg, png, tif, dpx, exr)");
  EXPECT_EQ(refusal(media_job("convert", "/p/s.1-3#.exr", "/p/s.####.img", {{"format", "png"}})),
            "accepted")
      << "--format chooses the writer whatever the extension";
  EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", "/p/s.avi")),
            "output /p/s.avi must end in .mov, .mp4 or .webm");
  EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", "/p/s.mp4", {{"codec", "prores"}})),
            "codec prores cannot go into /p/s.mp4 (use .mov)");
  EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", "/p/s.mov", {{"codec", "vp9"}})),
            "codec vp9 cannot go into /p/s.mov (use .webm or .mp4)");
  EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", "/p/s.webm", {{"codec", "h264"}})),
            "codec h264 cannot go into /p/s.webm (use .mp4 or .mov)");
  EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", "/p/s.mov", {{"codec", "x264"}})),
            "unknown codec 'x264' (h264, h265, vp9, av1, prores, dnxhr)");
}

// Each web codec in its containers, with its own crf range and default; a
// codec without a crf ignores one (a rule's defaults may carry one for all).
TEST(MediaPathsTest, EachReviewCodecGoesInItsContainersWithItsOwnCrf) {
  for (const auto& [codec, output] :
       std::vector<std::pair<std::string, std::string>>{{"h265", "/p/s.mp4"},
                                                        {"h265", "/p/s.mov"},
                                                        {"vp9", "/p/s.webm"},
                                                        {"vp9", "/p/s.mp4"},
                                                        {"av1", "/p/s.mp4"},
                                                        {"av1", "/p/s.webm"}}) {
    EXPECT_EQ(refusal(media_job("transcode", "/p/s.1-3#.exr", output, {{"codec", codec}})),
              "accepted")
        << codec << " in " << output;
  }
  auto crf_of = [](const std::string& codec, const std::string& output,
                   std::map<std::string, std::string> params) {
    params["codec"] = codec;
    auto spec = media_job("transcode", "/p/s.1-3#.exr", output, params);
    auto ok = prepare_media_job(spec);
    if (!ok) return ok.error().reason;
    auto crf = spec.params().find("crf");
    return crf == spec.params().end() ? std::string("none") : crf->second;
  };
  EXPECT_EQ(crf_of("h264", "/p/s.mov", {}), "23");
  EXPECT_EQ(crf_of("h265", "/p/s.mp4", {}), "28");
  EXPECT_EQ(crf_of("vp9", "/p/s.webm", {}), "32");
  EXPECT_EQ(crf_of("av1", "/p/s.mp4", {}), "35");
  EXPECT_EQ(crf_of("vp9", "/p/s.webm", {{"crf", "63"}}), "63");
  EXPECT_EQ(crf_of("vp9", "/p/s.webm", {{"crf", "64"}}), "bad crf '64' for vp9 (0-63)");
  EXPECT_EQ(crf_of("h264", "/p/s.mov", {{"crf", "52"}}), "bad crf '52' for h264 (0-51)");
  EXPECT_EQ(crf_of("prores", "/p/s.mov", {{"crf", "23"}}), "none");
}

// Burn-ins and the slate at submit: every name a burn-in reads is the
// movie's own or given; positions and braces are checked; the values, the
// burn-ins and the slate reach the media process.
TEST(MediaPathsTest, BurnInsAreCheckedAtSubmitAndReachTheMediaProcess) {
  auto movie = [](std::map<std::string, std::string> params) {
    return media_job("transcode", "/p/s.1-3#.exr", "/p/s.mov", std::move(params));
  };
  EXPECT_EQ(refusal(movie({{"burn_in", "{shot} {frame} {timecode} {date}"},
                           {"meta.shot", "sh010"},
                           {"slate", "true"}})),
            "accepted");
  EXPECT_EQ(refusal(movie({{"burn_in", "{shot}"}})),
            "burn-in '{shot}': no value for {shot} (give it with --meta shot=..., or use frame, "
            "timecode, first, last, fps, date)");
  EXPECT_EQ(refusal(movie({{"burn_in", "left=x"}})), "accepted")
      << "not a position: the whole is the text";
  EXPECT_EQ(refusal(movie({{"burn_in", "x}"}})), "burn-in 'x}': a '}' without its '{'");
  EXPECT_EQ(refusal(movie({{"slate", "yes"}})), "slate must be true or false, not 'yes'");
  EXPECT_EQ(refusal(movie({{"burn_in_size", "3"}})), "bad --burn-in-size '3' (6-999 pixels)");
  EXPECT_EQ(refusal(movie({{"burn_in_colour", "yellow@0.5:x=1"}})),
            "bad burn-in colour 'yellow@0.5:x=1' (#RRGGBB or white, black, grey, red, green, blue, "
            "yellow, cyan, "
            "magenta, orange)");
  EXPECT_EQ(refusal(movie({{"burn_in_colour", "#ffcc00"}, {"burn_in_size", "40"}})), "accepted");
  EXPECT_EQ(refusal(movie({{"meta.shot", "a\nb"}})),
            "bad --meta 'shot=a\\x0ab' (up to 64 keys, one line of 500 bytes each)");

  auto spec = movie({{"burn_in", "{shot}\ntop-right={timecode}"},
                     {"meta.shot", "sh010"},
                     {"slate", "true"},
                     {"display", "sRGB"},
                     {"view", "ACES 1.0 SDR-video"},
                     {"look", "shot_grade"},
                     {"burn_in_size", "40"},
                     {"burn_in_colour", "yellow"}});
  ASSERT_TRUE(prepare_media_job(spec));
  auto request = media_request(spec, common::FrameSet::range(1, 3));
  ASSERT_TRUE(request);
  media::Request parsed;
  ASSERT_TRUE(parsed.ParseFromString(*request));
  const auto& t = parsed.transcode();
  ASSERT_EQ(t.burn_in_size(), 2);
  EXPECT_EQ(t.burn_in(0), "bottom-left={shot}");
  EXPECT_EQ(t.burn_in(1), "top-right={timecode}");
  EXPECT_TRUE(t.slate());
  EXPECT_EQ(t.values().at("shot"), "sh010");
  EXPECT_EQ(t.display(), "sRGB");
  EXPECT_EQ(t.view(), "ACES 1.0 SDR-video");
  EXPECT_EQ(t.look(), "shot_grade");
  EXPECT_EQ(t.text_size(), 40u);
  EXPECT_EQ(t.text_colour(), "yellow");
}

// Proxies take burn-ins too (not a slate); their request carries them.
TEST(MediaPathsTest, ProxyBurnInsAreCheckedAndReachTheMediaProcess) {
  auto proxies = [](std::map<std::string, std::string> params) {
    return media_job("convert", "/p/s.1-3#.exr", "/p/proxy/s.####.jpg", std::move(params));
  };
  EXPECT_EQ(refusal(proxies({{"burn_in", "{shot}"}})),
            "burn-in '{shot}': no value for {shot} (give it with --meta shot=..., or use frame, "
            "timecode, first, last, fps, date)");
  EXPECT_EQ(refusal(proxies({{"slate", "true"}})), "unknown parameter 'slate' for convert jobs");
  auto spec = proxies({{"burn_in", "top-right={shot} {frame}"},
                       {"meta.shot", "sh010"},
                       {"burn_in_colour", "orange"}});
  ASSERT_TRUE(prepare_media_job(spec));
  auto request = media_request(spec, common::FrameSet::range(2, 1));  // the task of frame 2
  ASSERT_TRUE(request);
  media::Request parsed;
  ASSERT_TRUE(parsed.ParseFromString(*request));
  const auto& c = parsed.convert();
  ASSERT_EQ(c.burn_in_size(), 1);
  EXPECT_EQ(c.burn_in(0), "top-right={shot} {frame}");
  EXPECT_EQ(c.values().at("shot"), "sh010");
  EXPECT_EQ(c.text_colour(), "orange");
  EXPECT_EQ(c.sequence_first(), 1) << "{first} is the sequence's, not the chunk's";
  EXPECT_EQ(c.sequence_last(), 3);
}

TEST(MediaPathsTest, TheResolvedOutputDirectoryAndItsRootGoToTheMediaRequest) {
  TempDir real("fh-real");
  TempDir links("fh-links");
  const std::string mount = links.file("projects");  // a root that is itself a symlink
  fs::create_directory_symlink(real.path(), mount);
  fs::create_directory(real.file("sh010"));
  auto spec = media_job("convert", mount + "/sh010/c.1-2#.exr", mount + "/sh010/proxy/c.####.jpg");
  ASSERT_TRUE(submit_check(spec, {mount}));
  const std::string real_root = fs::canonical(real.path()).string();
  auto request = media_request(spec, common::FrameSet::range(1, 2));
  ASSERT_TRUE(request);
  media::Request parsed;
  ASSERT_TRUE(parsed.ParseFromString(*request));
  EXPECT_EQ(parsed.output_root(), real_root);
  EXPECT_EQ(parsed.output_dir(), real_root + "/sh010/proxy");
  // A user cannot choose them.
  auto forged = media_job("thumbnail", "/p/t.exr", "/p/t.jpg", {{kOutputRootParam, "/"}});
  EXPECT_EQ(refusal(forged), "unknown parameter '_output_root' for thumbnail jobs");
}

// A movie in segments: --segments N cuts N balanced tasks of at least a GOP;
// a movie after a render frame by frame is cut every GOP; the two jobs split
// from it write the segments into one folder beside the output and join them.
TEST(MediaPathsTest, AMovieInSegmentsIsCutIntoTasksAndSplitIntoSegmentsAndJoin) {
  auto planned = [](const std::string& frames, std::map<std::string, std::string> params,
                    uint64_t after_frames = 0) {
    auto spec =
        media_job("transcode", "/p/s." + frames + "####.exr", "/p/review/s.mp4", std::move(params));
    spec.set_after_frames(after_frames);
    auto ok = prepare_media_job(spec);
    if (!ok) return ok.error().reason;
    auto segments = spec.params().find("segments");
    return fmt::format("chunk {} segments {}", spec.chunk(),
                       segments == spec.params().end() ? "none" : segments->second);
  };
  EXPECT_EQ(planned("1-100", {}), "chunk 100 segments none");
  EXPECT_EQ(planned("1-100", {{"segments", "1"}}), "chunk 100 segments none");
  EXPECT_EQ(planned("1-100", {{"segments", "2"}}), "chunk 50 segments 2");
  EXPECT_EQ(planned("1-100", {{"segments", "4"}}), "chunk 30 segments 4") << "a GOP at least";
  EXPECT_EQ(planned("1-20", {{"segments", "4"}}), "chunk 20 segments none");
  EXPECT_EQ(planned("1-100", {}, 7), "chunk 30 segments 4") << "streamed behind job 7";
  EXPECT_EQ(planned("1-100", {{"segments", "1"}}, 7), "chunk 100 segments none");
  EXPECT_EQ(planned("1-100", {{"segments", "0"}}), "bad --segments '0' (1 to 10000)");
  EXPECT_EQ(planned("1-100", {{"segments", "-2"}}), "bad --segments '-2' (1 to 10000)");
  // The folder and the join are the broker's: a client cannot name them.
  EXPECT_EQ(planned("1-100", {{kSegmentDirParam, "/etc"}}),
            "unknown parameter '_segment_dir' for transcode jobs");
  EXPECT_EQ(planned("1-100", {{kJoinParam, "1"}}), "unknown parameter '_join' for transcode jobs");

  auto spec = media_job("transcode", "/p/s.1001-1100####.exr", "/p/review/s.mp4",
                        {{"segments", "2"}, {"audio", "/p/s.wav"}});
  spec.set_name("sh010 review");
  spec.set_idempotency_key("k1");
  spec.set_after_frames(3);
  ASSERT_TRUE(prepare_media_job(spec));
  ASSERT_TRUE(wants_segments(spec));
  MovieJobs jobs = split_movie_job(spec, 0xabc);
  EXPECT_FALSE(wants_segments(jobs.segments));
  EXPECT_EQ(jobs.segments.name(), "sh010 review [segments]");
  EXPECT_EQ(jobs.segments.idempotency_key(), "") << "the join answers for the submit";
  EXPECT_EQ(jobs.segments.after_frames(), 3u);
  EXPECT_EQ(jobs.segments.chunk(), 50u);
  EXPECT_EQ(jobs.join.name(), "sh010 review");
  EXPECT_EQ(jobs.join.idempotency_key(), "k1");
  EXPECT_EQ(jobs.join.after_frames(), 0u);
  EXPECT_EQ(jobs.join.chunk(), 100u);
  const std::string folder = "/p/review/.s.mp4.segments.0000000000000abc";
  // A segment task writes its segment into the folder, and no sound.
  auto task = media_request(jobs.segments, common::FrameSet::range(1051, 50));
  ASSERT_TRUE(task);
  media::Request segment;
  ASSERT_TRUE(segment.ParseFromString(*task));
  EXPECT_EQ(segment.transcode().output(), folder + "/seg.1051.1100.mp4");
  EXPECT_EQ(segment.transcode().movie_frames(), "1001-1100");
  EXPECT_EQ(segment.transcode().frames(), "1051-1100");
  // The join reads the folder and writes the movie, with its sound.
  auto joining = media_request(jobs.join, common::FrameSet::range(1001, 100));
  ASSERT_TRUE(joining);
  media::Request join;
  ASSERT_TRUE(join.ParseFromString(*joining));
  ASSERT_TRUE(join.has_join());
  EXPECT_EQ(join.join().segment_dir(), folder);
  EXPECT_EQ(join.join().output(), "/p/review/s.mp4");
  EXPECT_EQ(join.join().frames(), "1001-1100");
  EXPECT_EQ(join.join().audio(), "/p/s.wav");
}

}  // namespace
}  // namespace farmhand::daemon
