// transcode(): movies checked with the ffprobe/ffmpeg CLIs as oracles, the
// first frame against an oiiotool sRGB rendition of the EXR.
#include "workers/media/transcode.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/full_disk.h"
#include "tests/support/ocio_configs.h"
#include "tests/support/temp_dir.h"
#include <OpenImageIO/imagebuf.h>
#include <OpenImageIO/imagebufalgo.h>
#include <OpenImageIO/imageio.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "workers/media/movie_join.h"

extern "C" {
#include <libavutil/log.h>
}

namespace farmhand::media {
namespace {

namespace fs = std::filesystem;

fs::path source_dir() {
  if (const char* dir = std::getenv("FARMHAND_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // Run by hand outside ctest: tests/unit/media/transcode_test.cpp -> the repository root.
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

fs::path beachball_dir() {
  return source_dir() / ".." / "shared" / "data" / "openexr-images" / "Beachball";
}

std::string beachball(int frame) {
  char name[32];
  std::snprintf(name, sizeof(name), "singlepart.%04d.exr", frame);
  return (beachball_dir() / name).string();
}

using TempDir = farmhand::testing_support::TempDir;

struct CommandOutput {
  int status = -1;
  std::string out;  // stdout only; stderr goes to the test log
};

CommandOutput run(const std::string& command) {
  CommandOutput result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 65536> buffer;
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string quoted(const std::string& text) {
  return "'" + text + "'";
}

// ffprobe's default output (key=value lines) as a map.
std::map<std::string, std::string> key_values(const std::string& text) {
  std::map<std::string, std::string> fields;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) fields[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return fields;
}

// ffprobe's view of the first video stream: key=value per entry.
std::map<std::string, std::string> probe(const std::string& movie) {
  const CommandOutput output =
      run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
          "stream=codec_name,codec_tag_string,profile,pix_fmt,width,height,r_frame_rate,"
          "nb_read_frames,has_b_frames,duration,sample_aspect_ratio,"
          "color_primaries,color_transfer,color_space,color_range:format_tags=major_brand "
          "-of default=noprint_wrappers=1 " +
          quoted(movie));
  EXPECT_EQ(output.status, 0) << "ffprobe " << movie;
  return key_values(output.out);
}

// The BT.709 tags every review movie carries (primaries, transfer, matrix).
void expect_bt709(std::map<std::string, std::string>& info) {
  EXPECT_EQ(info["color_primaries"], "bt709");
  EXPECT_EQ(info["color_transfer"], "bt709");
  EXPECT_EQ(info["color_space"], "bt709");
}

// Which decoded frames are key frames, in order.
std::vector<bool> key_frames(const std::string& movie) {
  const CommandOutput output =
      run("ffprobe -v error -select_streams v:0 -show_entries frame=key_frame -of csv=p=0 " +
          quoted(movie));
  EXPECT_EQ(output.status, 0) << "ffprobe key frames " << movie;
  std::vector<bool> keys;
  std::istringstream lines(output.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) keys.push_back(line[0] == '1');
  }
  return keys;
}

// The MD5 of every decoded frame, in order (ffmpeg's framemd5 muxer).
std::vector<std::string> frame_md5s(const std::string& movie) {
  const CommandOutput output = run("ffmpeg -v error -i " + quoted(movie) + " -f framemd5 -");
  EXPECT_EQ(output.status, 0) << "ffmpeg framemd5 " << movie;
  std::vector<std::string> md5s;
  std::istringstream lines(output.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    md5s.push_back(line.substr(line.find_first_not_of(' ', line.rfind(',') + 1)));
  }
  return md5s;
}

// One decoded frame as raw 8-bit planes in `pix_fmt` (ffmpeg converts if needed).
std::string raw_frame(const std::string& movie, int index, const std::string& pix_fmt) {
  const CommandOutput output =
      run("ffmpeg -v error -i " + quoted(movie) + " -vf 'select=eq(n\\," + std::to_string(index) +
          ")' -frames:v 1 -f rawvideo -pix_fmt " + pix_fmt + " -");
  EXPECT_EQ(output.status, 0) << "ffmpeg rawvideo " << movie;
  return output.out;
}

// The brightest luma value of one decoded frame, 8-bit limited range (black is 16).
int max_luma(const std::string& movie, int index) {
  const std::string yuv = raw_frame(movie, index, "yuv420p");
  const auto size = static_cast<size_t>(std::stoi(probe(movie)["width"])) *
                    static_cast<size_t>(std::stoi(probe(movie)["height"]));
  if (yuv.size() < size) return -1;
  int brightest = 0;
  for (size_t i = 0; i < size; ++i) brightest = std::max(brightest, yuv[i] & 0xff);
  return brightest;
}

std::vector<std::string> beachball_frames() {
  std::vector<std::string> frames;
  for (int frame = 1; frame <= 8; ++frame) frames.push_back(beachball(frame));
  return frames;
}

TranscodeOptions beachball_options(const std::string& output) {
  TranscodeOptions options;
  options.frames = beachball_frames();
  options.frame_numbers = {1, 2, 3, 4, 5, 6, 7, 8};
  options.output = output;
  return options;
}

TranscodeReport transcode_ok(const TranscodeOptions& options) {
  Result<TranscodeReport> report = transcode(options);
  if (!report) {
    ADD_FAILURE() << "transcode to " << options.output << " failed: " << report.error().reason;
    return TranscodeReport();
  }
  return *report;
}

class TranscodeTest : public ::testing::Test {
 protected:
  // libx264 prints its settings and statistics at info level for every movie.
  static void SetUpTestSuite() { av_log_set_level(AV_LOG_ERROR); }

  void SetUp() override {
    ASSERT_TRUE(fs::is_directory(beachball_dir())) << "test data missing: " << beachball_dir();
  }

  TempDir dir_;
};

TEST_F(TranscodeTest, H264MovieOfEightBeachballFramesHasEightFramesAt24FpsTaggedBt709) {
  const std::string movie = dir_.file("review.mov");
  const TranscodeReport report = transcode_ok(beachball_options(movie));
  EXPECT_EQ(report.frames_written, 8u);
  EXPECT_EQ(report.frames_missing, 0u);
  EXPECT_EQ(report.width, 2048u);
  EXPECT_EQ(report.height, 1556u);

  auto info = probe(movie);
  EXPECT_EQ(info["codec_name"], "h264");
  EXPECT_EQ(info["profile"], "High");
  EXPECT_EQ(info["pix_fmt"], "yuv420p");
  EXPECT_EQ(info["width"], "2048");
  EXPECT_EQ(info["height"], "1556");
  EXPECT_EQ(info["nb_read_frames"], "8");
  EXPECT_EQ(info["r_frame_rate"], "24/1");
  EXPECT_EQ(info["duration"], "0.333333");  // 8 frames of 1/24 s, the last one included
  expect_bt709(info);
  EXPECT_EQ(info["color_range"], "tv");
  EXPECT_EQ(info["has_b_frames"], "0");  // -bf 0, as ShotGrid's review transcode
  EXPECT_EQ(info["TAG:major_brand"], "qt  ");
}

// The movie reads each file on its decode thread (exr_threads 1) and gives
// OpenImageIO's process-wide setting back when it is done.
TEST_F(TranscodeTest, AMovieLeavesOpenExrThreadingAsItFoundIt) {
  int before = 0;
  ASSERT_TRUE(OIIO::getattribute("exr_threads", before));
  ASSERT_TRUE(OIIO::attribute("exr_threads", 3));
  TranscodeOptions options = beachball_options(dir_.file("threads.mov"));
  options.decode_threads = 2;
  transcode_ok(options);
  int after = 0;
  ASSERT_TRUE(OIIO::getattribute("exr_threads", after));
  EXPECT_EQ(after, 3);
  OIIO::attribute("exr_threads", before);
}

TEST_F(TranscodeTest, GopSetsTheLongestRunBetweenKeyFrames) {
  const std::string movie = dir_.file("gop.mov");
  TranscodeOptions options = beachball_options(movie);
  options.max_width = 256;
  options.gop = 3;
  transcode_ok(options);
  const std::vector<bool> keys = key_frames(movie);
  ASSERT_EQ(keys.size(), 8u);
  size_t since_key = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    since_key = keys[i] ? 0 : since_key + 1;
    EXPECT_LT(since_key, 3u) << "frame " << i << " is " << since_key << " frames after a key frame";
  }
  EXPECT_TRUE(keys[0]);
}

TEST_F(TranscodeTest, FractionalRate23976IsStoredAs24000Over1001) {
  const std::string movie = dir_.file("ntsc.mov");
  TranscodeOptions options = beachball_options(movie);
  options.frames.resize(3);
  options.frame_numbers.resize(3);
  options.max_width = 512;
  options.fps = 23.976;
  transcode_ok(options);
  auto info = probe(movie);
  EXPECT_EQ(info["r_frame_rate"], "24000/1001");
  EXPECT_EQ(info["nb_read_frames"], "3");
}

TEST_F(TranscodeTest, ProresMovieIsProres422HqIn10Bit) {
  const std::string movie = dir_.file("review.mov");
  TranscodeOptions options = beachball_options(movie);
  options.codec = "prores";
  options.max_width = 1024;
  transcode_ok(options);
  auto info = probe(movie);
  EXPECT_EQ(info["codec_name"], "prores");
  EXPECT_EQ(info["profile"], "HQ");
  EXPECT_EQ(info["pix_fmt"], "yuv422p10le");
  EXPECT_EQ(info["nb_read_frames"], "8");
  expect_bt709(info);
}

TEST_F(TranscodeTest, DnxhrMovieUsesDnxhrHqProfileIn8Bit) {
  const std::string movie = dir_.file("review.mov");
  TranscodeOptions options = beachball_options(movie);
  options.codec = "dnxhr";
  options.max_width = 1024;
  transcode_ok(options);
  auto info = probe(movie);
  EXPECT_EQ(info["codec_name"], "dnxhd");
  EXPECT_EQ(info["profile"], "DNXHR HQ");
  EXPECT_EQ(info["pix_fmt"], "yuv422p");
  EXPECT_EQ(info["nb_read_frames"], "8");
}

TEST_F(TranscodeTest, MaxWidthScalesDownToAnEvenSizeKeepingAspect) {
  const std::string movie = dir_.file("proxy.mov");
  TranscodeOptions options = beachball_options(movie);
  options.frames.resize(2);
  options.frame_numbers.resize(2);
  options.max_width = 1001;  // 2048x1556 -> 1001x760.5 -> 1000x760
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.width, 1000u);
  EXPECT_EQ(report.height, 760u);
  auto info = probe(movie);
  EXPECT_EQ(info["width"], "1000");
  EXPECT_EQ(info["height"], "760");
  EXPECT_EQ(info["nb_read_frames"], "2");
}

TEST_F(TranscodeTest, Mp4OutputUsesTheMp4Muxer) {
  const std::string movie = dir_.file("review.mp4");
  TranscodeOptions options = beachball_options(movie);
  options.frames.resize(2);
  options.frame_numbers.resize(2);
  options.max_width = 512;
  transcode_ok(options);
  auto info = probe(movie);
  EXPECT_EQ(info["codec_name"], "h264");
  EXPECT_EQ(info["TAG:major_brand"], "isom");
  EXPECT_EQ(info["nb_read_frames"], "2");
}

// The top-level boxes of an MP4/MOV file, in order.
std::vector<std::string> top_level_boxes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> boxes;
  for (;;) {
    unsigned char head[16];
    if (!in.read(reinterpret_cast<char*>(head), 8)) break;
    uint64_t size =
        (uint64_t{head[0]} << 24) | (uint64_t{head[1]} << 16) | (uint64_t{head[2]} << 8) | head[3];
    boxes.emplace_back(reinterpret_cast<char*>(head + 4), 4);
    uint64_t header = 8;
    if (size == 1) {  // a 64-bit size follows
      if (!in.read(reinterpret_cast<char*>(head + 8), 8)) break;
      size = 0;
      for (int i = 8; i < 16; ++i) size = (size << 8) | head[i];
      header = 16;
    }
    if (size < header) break;  // 0: to the end of the file
    in.seekg(static_cast<std::streamoff>(size - header), std::ios::cur);
  }
  return boxes;
}

// The web review formats: each codec in each of its containers, 4 frames,
// yuv420p at even size with square pixels, tagged BT.709.
TEST_F(TranscodeTest, WebCodecsAreEvenSquarePixelYuv420TaggedBt709InEachOfTheirContainers) {
  struct Case {
    std::string codec, file, codec_name, tag;
  };

  for (const Case& c : std::vector<Case>{{"h265", "web.mp4", "hevc", "hvc1"},
                                         {"h265", "web.mov", "hevc", "hvc1"},
                                         {"vp9", "web.webm", "vp9", ""},
                                         {"vp9", "web.mp4", "vp9", "vp09"},
                                         {"av1", "web.mp4", "av1", "av01"},
                                         {"av1", "web.webm", "av1", ""}}) {
    SCOPED_TRACE(c.codec + " in " + c.file);
    const std::string movie = dir_.file(c.codec + "-" + c.file);
    TranscodeOptions options = beachball_options(movie);
    options.frames.resize(4);
    options.frame_numbers.resize(4);
    options.codec = c.codec;
    options.max_width = 321;  // 321x243.9 rounds to 321x244: even both ways, 320x244
    const TranscodeReport report = transcode_ok(options);
    EXPECT_EQ(report.width, 320u);
    EXPECT_EQ(report.height, 244u);
    auto info = probe(movie);
    EXPECT_EQ(info["codec_name"], c.codec_name);
    if (!c.tag.empty()) {
      EXPECT_EQ(info["codec_tag_string"], c.tag);
    }
    EXPECT_EQ(info["pix_fmt"], "yuv420p");
    EXPECT_EQ(info["width"], "320");
    EXPECT_EQ(info["height"], "244");
    EXPECT_EQ(info["sample_aspect_ratio"], "1:1");
    EXPECT_EQ(info["nb_read_frames"], "4");
    expect_bt709(info);
    EXPECT_EQ(info["color_range"], "tv");
  }
}

// +faststart: the index (moov) comes before the media (mdat), so a browser
// plays an MP4 before it has all of it; the same for MOV.
TEST_F(TranscodeTest, Mp4AndMovMoviesHaveTheirIndexBeforeTheirMedia) {
  for (const std::string name : {"fast.mp4", "fast.mov"}) {
    const std::string movie = dir_.file(name);
    TranscodeOptions options = beachball_options(movie);
    options.frames.resize(3);
    options.frame_numbers.resize(3);
    options.max_width = 256;
    transcode_ok(options);
    const auto boxes = top_level_boxes(movie);
    const auto moov = std::find(boxes.begin(), boxes.end(), "moov");
    const auto mdat = std::find(boxes.begin(), boxes.end(), "mdat");
    ASSERT_NE(moov, boxes.end()) << name;
    ASSERT_NE(mdat, boxes.end()) << name;
    EXPECT_LT(moov - boxes.begin(), mdat - boxes.begin()) << name << ": moov after mdat";
    const CommandOutput tags =
        run("ffprobe -v error -show_entries format_tags=comment -of "
            "csv=p=0 " +
            quoted(movie));
    EXPECT_NE(tags.out.find("farmhand colour: linear -> sRGB (OpenImageIO built-in)"),
              std::string::npos)
        << "the display transform is in the movie's metadata: " << tags.out;
  }
}

// Odd-sized and anamorphic frames: web codecs need even sizes and show
// square pixels, so the picture is widened by its pixel aspect and cut to even.
TEST_F(TranscodeTest, AnOddSizedAnamorphicSequenceIsAnEvenSquarePixelWebMovie) {
  std::vector<std::string> frames;
  for (int frame = 1; frame <= 2; ++frame) {
    OIIO::ImageSpec spec(101, 51, 3, OIIO::TypeDesc::HALF);
    spec.attribute("PixelAspectRatio", 2.0f);
    OIIO::ImageBuf buf(spec);
    const float grey[3] = {0.18f, 0.18f, 0.18f};
    OIIO::ImageBufAlgo::fill(buf, grey);
    frames.push_back(dir_.file("ana." + std::to_string(frame) + ".exr"));
    ASSERT_TRUE(buf.write(frames.back())) << buf.geterror();
  }
  TranscodeOptions options;
  options.frames = frames;
  options.output = dir_.file("ana.webm");
  options.codec = "vp9";
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.width, 202u);  // 101 pixels of aspect 2 show 202 wide
  EXPECT_EQ(report.height, 50u);
  auto info = probe(options.output);
  EXPECT_EQ(info["width"], "202");
  EXPECT_EQ(info["height"], "50");
  EXPECT_EQ(info["sample_aspect_ratio"], "1:1");
}

TEST_F(TranscodeTest, AWebCodecInAContainerItCannotGoInIsRefusedNamingWhereItGoes) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.codec = "vp9";
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(report.error().reason.find("use .webm or .mp4"), std::string::npos)
      << report.error().reason;
  options.output = dir_.file("review.webm");
  options.crf = 64;
  report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_NE(report.error().reason.find("crf 64 out of range 0-63"), std::string::npos)
      << report.error().reason;
  EXPECT_TRUE(dir_.entries().empty());
}

// ffprobe's view of the first audio stream: key=value per entry.
std::map<std::string, std::string> probe_audio(const std::string& movie) {
  const CommandOutput output =
      run("ffprobe -v error -select_streams a:0 -show_entries "
          "stream=codec_name,sample_rate,channels,duration -of default=noprint_wrappers=1 " +
          quoted(movie));
  return key_values(output.out);
}

// A movie's sound decoded to mono 16-bit samples at `rate` (ffmpeg as the oracle).
std::vector<int16_t> sound_samples(const std::string& movie, int rate) {
  const CommandOutput output =
      run("ffmpeg -v error -i " + quoted(movie) + " -map 0:a:0 -ac 1 -ar " + std::to_string(rate) +
          " -f s16le -acodec pcm_s16le -");
  EXPECT_EQ(output.status, 0) << "ffmpeg sound of " << movie;
  std::vector<int16_t> samples(output.out.size() / 2);
  std::memcpy(samples.data(), output.out.data(), samples.size() * 2);
  return samples;
}

// The first sample louder than a whisper; -1 if none.
int64_t first_loud(const std::vector<int16_t>& samples) {
  for (size_t i = 0; i < samples.size(); ++i) {
    if (std::abs(samples[i]) > 1000) return static_cast<int64_t>(i);
  }
  return -1;
}

class TranscodeSoundTest : public TranscodeTest {
 protected:
  // A sound made with ffmpeg: about `quiet` seconds of silence (to the next
  // 1,024 samples: the filter switches per frame), then a 440 Hz tone to `total` seconds.
  std::string sound(const std::string& name, double quiet, double total, int rate,
                    const std::string& codec) {
    const std::string path = dir_.file(name);
    const std::string made =
        "ffmpeg -v error -y -f lavfi -i 'sine=frequency=440:sample_rate=" + std::to_string(rate) +
        ":duration=" + std::to_string(total) + "' -af 'volume=enable=lt(t\\," +
        std::to_string(quiet) + "):volume=0' -c:a " + codec + " " + quoted(path);
    EXPECT_EQ(run(made).status, 0) << made;
    return path;
  }

  TranscodeOptions small(const std::string& output, const std::string& codec) {
    TranscodeOptions options = beachball_options(output);
    options.codec = codec;
    options.max_width = 256;
    return options;
  }
};

// A sound longer than the pictures is cut at the last picture: the movie
// lasts as long as its pictures, and the sound with it (AAC in MP4).
TEST_F(TranscodeSoundTest, ASoundLongerThanThePicturesIsCutAtTheLastOneAsAacInMp4) {
  TranscodeOptions options = small(dir_.file("sound.mp4"), "h264");
  options.audio = sound("long.wav", 0, 2.0, 44100, "pcm_s16le");
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.audio_encoder, "aac");
  auto video = probe(options.output);
  auto audio = probe_audio(options.output);
  EXPECT_EQ(audio["codec_name"], "aac");
  EXPECT_EQ(audio["sample_rate"], "44100");
  EXPECT_EQ(audio["channels"], "2");
  ASSERT_FALSE(audio["duration"].empty());
  EXPECT_NEAR(std::stod(audio["duration"]), std::stod(video["duration"]), 0.005)
      << "8 frames at 24 fps are 0.333 s";
}

// A shorter sound ends in silence: the movie does not end before its pictures.
TEST_F(TranscodeSoundTest, AShorterSoundEndsInSilenceAndTheMovieKeepsItsPictures) {
  TranscodeOptions options = small(dir_.file("short.mov"), "prores");
  options.audio = sound("short.wav", 0, 0.1, 48000, "pcm_s16le");
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.audio_encoder, "pcm_s16le") << "a 16-bit source stays 16-bit";
  auto video = probe(options.output);
  auto audio = probe_audio(options.output);
  EXPECT_EQ(video["nb_read_frames"], "8");
  EXPECT_EQ(audio["duration"], video["duration"]);
  const std::vector<int16_t> samples = sound_samples(options.output, 48000);
  ASSERT_EQ(samples.size(), 16000u) << "0.333 s at 48 kHz";
  EXPECT_LT(first_loud(samples), 48) << "the tone from its first millisecond";
  for (size_t i = 4900; i < samples.size(); ++i) {
    ASSERT_EQ(samples[i], 0) << "silence after the sound, sample " << i;
  }
}

// An offset in frames delays the sound (silence first) or cuts its start;
// PCM in a ProRes MOV keeps every sample where it was put.
TEST_F(TranscodeSoundTest, AnOffsetInFramesDelaysOrCutsTheSoundToTheSample) {
  const std::string wav = sound("late.wav", 0.1, 1.0, 48000, "pcm_s24le");
  TranscodeOptions options = small(dir_.file("delayed.mov"), "prores");
  options.audio = wav;
  options.audio_offset = 2;  // 2/24 s = 4,000 samples later
  EXPECT_EQ(transcode_ok(options).audio_encoder, "pcm_s24le");
  const int64_t starts = first_loud(sound_samples(wav, 48000));  // about 0.1 s in
  ASSERT_GT(starts, 2000);
  const int64_t delayed = first_loud(sound_samples(options.output, 48000));
  EXPECT_EQ(delayed, starts + 4000) << "the tone starts 2 frames later";

  options.output = dir_.file("cut.mov");
  options.audio_offset = -1;  // 1/24 s = 2,000 samples earlier
  transcode_ok(options);
  const int64_t cut = first_loud(sound_samples(options.output, 48000));
  EXPECT_EQ(cut, starts - 2000) << "the tone starts 1 frame earlier";
}

TEST_F(TranscodeSoundTest, WebmGetsOpusAndEveryOtherFormatItsSoundStream) {
  struct Case {
    std::string codec, file, audio_codec;
  };

  const std::string flac = sound("tone.flac", 0, 1.0, 96000, "flac");
  for (const Case& c : std::vector<Case>{{"vp9", "s.webm", "opus"},
                                         {"av1", "s.mp4", "aac"},
                                         {"h265", "s.mov", "aac"},
                                         {"dnxhr", "s.mov", "pcm_s24le"}}) {
    SCOPED_TRACE(c.codec + " " + c.file);
    TranscodeOptions options = small(dir_.file(c.codec + "-" + c.file), c.codec);
    options.audio = flac;
    transcode_ok(options);
    auto audio = probe_audio(options.output);
    EXPECT_EQ(audio["codec_name"], c.audio_codec);
    EXPECT_EQ(probe(options.output)["nb_read_frames"], "8");
    EXPECT_GT(first_loud(sound_samples(options.output, 48000)), -1) << "the tone is heard";
  }
}

TEST_F(TranscodeSoundTest, AnUnreadableSoundFailsNamingItAndLeavesNoMovie) {
  TranscodeOptions options = small(dir_.file("bad.mp4"), "h264");
  options.audio = dir_.file("notes.txt");
  std::ofstream(options.audio) << "not a sound";
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_NE(report.error().reason.find("cannot read sound " + options.audio), std::string::npos)
      << report.error().reason;
  EXPECT_FALSE(fs::exists(options.output));
  EXPECT_EQ(dir_.entries().size(), 1u) << "no temporary left";
}

// ---------------------------------------------------------------- burn-ins and slate

TEST(ReviewTextTest, TemplatesExpandPerFrameAndTimecodeIsSmpteNonDrop) {
  ReviewValues values;
  values.values = {{"shot", "sh010"}, {"version", "3"}};
  values.first = 1001;
  values.last = 1100;
  values.fps = 24;
  auto text = expand_review_text("{shot} v{version} {frame} [{first}-{last}] {timecode} {{x}}",
                                 values, 1017);
  ASSERT_TRUE(text) << text.error().reason;
  EXPECT_EQ(*text, "sh010 v3 1017 [1001-1100] 00:00:42:09 {x}");
  EXPECT_EQ(smpte_timecode(1001, 24), "00:00:41:17");
  EXPECT_EQ(smpte_timecode(1001, 23.976), "00:00:41:17") << "nominal 24";
  EXPECT_EQ(smpte_timecode(86400 * 25 + 3, 25), "00:00:00:03") << "wraps at 24 hours";
  auto unknown = expand_review_text("{shto}", values, 1);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().reason, "burn-in '{shto}': no value for {shto}");
  EXPECT_FALSE(expand_review_text("{shot", values, 1));
  EXPECT_FALSE(expand_review_text("shot}", values, 1));
}

class TranscodeReviewTest : public TranscodeTest {
 protected:
  // A 320x240 half EXR of one colour, with these chromaticities if given.
  static void flat_exr(const std::string& path, const float* rgb,
                       const float* chromaticities = nullptr) {
    OIIO::ImageSpec spec(320, 240, 3, OIIO::TypeDesc::HALF);
    if (chromaticities != nullptr) {
      spec.attribute("chromaticities", OIIO::TypeDesc(OIIO::TypeDesc::FLOAT, 8), chromaticities);
    }
    OIIO::ImageBuf buf(spec);
    OIIO::ImageBufAlgo::fill(buf, {rgb, 3});
    EXPECT_TRUE(buf.write(path)) << buf.geterror();
  }

  // `count` frames of flat 18% grey, 320x240, numbered from 1001.
  TranscodeOptions grey(const std::string& output, int count) {
    TranscodeOptions options;
    for (int frame = 1001; frame < 1001 + count; ++frame) {
      const std::string path = dir_.file("grey." + std::to_string(frame) + ".exr");
      const float value[3] = {0.18f, 0.18f, 0.18f};
      if (!fs::exists(path)) flat_exr(path, value);
      options.frames.push_back(path);
      options.frame_numbers.push_back(frame);
    }
    options.output = output;
    options.codec = "prores";  // intra only: the same picture encodes the same
    options.values = {{"shot", "sh010"}, {"version", "3"}};
    return options;
  }

  static std::string rgb(const std::string& movie, int index) {
    return raw_frame(movie, index, "rgb24");
  }

  // How many pixels of a box differ by more than `by` between two rgb24 frames.
  static int differing(const std::string& a, const std::string& b, int x0, int y0, int w, int h,
                       int by = 24) {
    int count = 0;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        const size_t at = (static_cast<size_t>(y) * 320 + x) * 3;
        for (int c = 0; c < 3; ++c) {
          if (std::abs((a[at + c] & 0xff) - (b[at + c] & 0xff)) > by) {
            ++count;
            break;
          }
        }
      }
    }
    return count;
  }
};

// Burn-ins are drawn where configured, change with the frame, and leave the
// rest of the picture as it was; drawn as ffmpeg's drawtext draws the same
// text (the reference render), within a tolerance.
TEST_F(TranscodeReviewTest, BurnInsAreDrawnWhereConfiguredAndNowhereElse) {
  TranscodeOptions plain = grey(dir_.file("plain.mov"), 3);
  transcode_ok(plain);
  TranscodeOptions burned = grey(dir_.file("burned.mov"), 3);
  burned.burn_ins = {BurnIn{"{shot} v{version}", "bottom-left", 0},
                     BurnIn{"{timecode}", "top-right", 0}};
  transcode_ok(burned);
  EXPECT_EQ(probe(burned.output)["nb_read_frames"], "3");
  const std::string before = rgb(plain.output, 1);
  const std::string after = rgb(burned.output, 1);
  ASSERT_EQ(before.size(), 320u * 240 * 3);
  ASSERT_EQ(after.size(), before.size());
  // Font size 240 / 28 = 8 is raised to 10; the margin is 6 (240 / 40).
  EXPECT_GT(differing(before, after, 0, 200, 160, 40), 40) << "the shot and version, bottom left";
  EXPECT_GT(differing(before, after, 200, 0, 120, 40), 40) << "the timecode, top right";
  EXPECT_EQ(differing(before, after, 0, 40, 320, 160), 0) << "the middle is untouched";
  EXPECT_EQ(differing(before, after, 0, 0, 160, 40), 0) << "nothing top left";
  EXPECT_EQ(differing(before, after, 200, 200, 120, 40), 0) << "nothing bottom right";
  EXPECT_GT(differing(rgb(burned.output, 0), after, 200, 0, 120, 40, 8), 0)
      << "the timecode moves from frame to frame";
  EXPECT_EQ(differing(rgb(burned.output, 0), after, 0, 200, 160, 40, 8), 0) << "the shot does not";

  // The reference: ffmpeg's own drawtext of the same text on the plain movie.
  const std::string reference = dir_.file("reference.mov");
  const std::string font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
  const std::string filter =
      "drawtext=fontfile=" + font +
      ":text='sh010 v3':fontsize=10:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=2"
      ":x=6:y=h-th-6,drawtext=fontfile=" +
      font +
      ":text='00\\:00\\:41\\:18':fontsize=10:fontcolor=white:box=1:boxcolor=black@0.6:"
      "boxborderw=2:x=w-tw-6:y=6";
  ASSERT_EQ(run(std::string("ffmpeg -v error -y -i '") + plain.output + "' -vf \"" + filter +
                "\" -c:v prores_ks -profile:v 3 " + "'" + reference + "'")
                .status,
            0);
  EXPECT_LE(differing(rgb(reference, 1), after, 0, 0, 320, 240, 24), 8)
      << "ours and ffmpeg's drawtext differ by more than the encoding";
}

// A burn-in's colour and size are the job's: yellow text, larger than the default.
TEST_F(TranscodeReviewTest, BurnInsTakeTheirColourAndSize) {
  TranscodeOptions options = grey(dir_.file("yellow.mov"), 1);
  options.burn_ins = {BurnIn{"{shot} {shot} {shot}", "top-left", 30, "yellow"}};
  transcode_ok(options);
  const std::string frame = rgb(options.output, 0);
  ASSERT_EQ(frame.size(), 320u * 240 * 3);
  int yellow = 0, deepest = 0;
  for (int y = 0; y < 240; ++y) {
    for (int x = 0; x < 320; ++x) {
      const size_t at = (static_cast<size_t>(y) * 320 + x) * 3;
      const int r = frame[at] & 0xff, g = frame[at + 1] & 0xff, b = frame[at + 2] & 0xff;
      if (r > 180 && g > 180 && b < 100) {
        ++yellow;
        deepest = std::max(deepest, y);
      }
    }
  }
  EXPECT_GT(yellow, 200) << "yellow text";
  // Capitals of 30-pixel text from the 6-pixel margin reach row 25 or so;
  // the default size here (10 px) would stop near row 14.
  EXPECT_GT(deepest, 20);
}

// The slate is frame 0; the pictures follow it unchanged.
TEST_F(TranscodeReviewTest, ASlateIsTheFirstFrameAndThePicturesFollowIt) {
  TranscodeOptions plain = grey(dir_.file("plain.mov"), 3);
  transcode_ok(plain);
  TranscodeOptions slated = grey(dir_.file("slated.mov"), 3);
  slated.slate = true;
  const TranscodeReport report = transcode_ok(slated);
  EXPECT_TRUE(report.slate);
  EXPECT_EQ(report.frames_written, 3u);
  EXPECT_EQ(probe(slated.output)["nb_read_frames"], "4");
  const auto ours = frame_md5s(slated.output);
  const auto pictures = frame_md5s(plain.output);
  ASSERT_EQ(ours.size(), 4u);
  ASSERT_EQ(pictures.size(), 3u);
  EXPECT_NE(ours[0], pictures[0]) << "frame 0 is the slate";
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(ours[i + 1], pictures[i]) << "picture " << i;
  // The slate has text (bright pixels) on its left, where the pictures are flat grey.
  EXPECT_GT(differing(rgb(slated.output, 0), rgb(plain.output, 0), 0, 0, 160, 240, 60), 100);
}

// With a slate, the sound starts with the first picture, not with the slate.
TEST_F(TranscodeReviewTest, WithASlateTheSoundStartsWithTheFirstPicture) {
  TranscodeOptions options = grey(dir_.file("slate-sound.mov"), 4);
  options.slate = true;
  options.audio = dir_.file("tone.wav");
  ASSERT_EQ(run(std::string("ffmpeg -v error -y -f lavfi -i ") +
                "'sine=frequency=440:sample_rate=48000:duration=1' -c:a pcm_s16le '" +
                options.audio + "'")
                .status,
            0);
  transcode_ok(options);
  EXPECT_EQ(probe_audio(options.output)["duration"], probe(options.output)["duration"]);
  const int64_t starts = first_loud(sound_samples(options.output, 48000));
  EXPECT_GE(starts, 2000) << "silent under the slate (1/24 s)";
  EXPECT_LT(starts, 2048);
}

// An ACES (AP0) plate in a movie: converted to Rec.709 primaries before the
// display curve, not shown washed out (the fast path steps aside for it).
TEST_F(TranscodeReviewTest, AnAcesPlateIsNotWashedOutInTheMovie) {
  TranscodeOptions options;
  const float ap0[8] = {0.7347f, 0.2653f, 0.0f, 1.0f, 0.0001f, -0.0770f, 0.32168f, 0.33767f};
  const float red[3] = {0.18f, 0.0f, 0.0f};
  for (int frame = 1; frame <= 2; ++frame) {
    options.frames.push_back(dir_.file("aces." + std::to_string(frame) + ".exr"));
    flat_exr(options.frames.back(), red, ap0);
  }
  options.output = dir_.file("aces.mov");
  options.codec = "prores";
  transcode_ok(options);
  const std::string frame = rgb(options.output, 1);
  ASSERT_EQ(frame.size(), 320u * 240 * 3);
  const size_t middle = (120 * 320 + 160) * 3;
  // Rec.709 red 0.454 is sRGB 0.70 (179); washed out it would be 0.46 (118).
  EXPECT_NEAR(frame[middle] & 0xff, 179, 6);
  EXPECT_LT(frame[middle + 1] & 0xff, 12);
}

// A web movie prefers an OCIO config's sRGB display; ProRes for the
// editorial suite takes the config's default; a job's choice wins. The
// movie's metadata says which.
TEST_F(TranscodeReviewTest, TheDisplayTransformIsChosenForTheFormatAndWrittenInTheMovie) {
  const std::string config = testing_support::write_two_display_config(dir_.path());
  auto comment = [](const std::string& movie) {
    return run("ffprobe -v error -show_entries format_tags=comment -of csv=p=0 '" + movie + "'")
        .out;
  };
  TranscodeOptions web = grey(dir_.file("web.mp4"), 2);
  web.codec = "h264";
  web.colour.config = config;
  transcode_ok(web);
  EXPECT_NE(comment(web.output).find("display sRGB, view standard"), std::string::npos)
      << comment(web.output);
  TranscodeOptions edit = grey(dir_.file("edit.mov"), 2);
  edit.colour.config = config;
  transcode_ok(edit);
  EXPECT_NE(comment(edit.output).find("display monitor, view flat"), std::string::npos)
      << comment(edit.output);
  TranscodeOptions chosen = grey(dir_.file("chosen.mp4"), 2);
  chosen.codec = "h264";
  chosen.colour = {config, "sRGB", "raw", "half"};
  transcode_ok(chosen);
  EXPECT_NE(comment(chosen.output).find("display sRGB, view raw, look half"), std::string::npos)
      << comment(chosen.output);
}

TEST_F(TranscodeReviewTest, ABurnInWithAnUnknownValueFailsBeforeAnyOutput) {
  TranscodeOptions options = grey(dir_.file("bad.mov"), 2);
  options.burn_ins = {BurnIn{"{shot} {seqeunce}", "top", 0}};
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().reason, "burn-in '{shot} {seqeunce}': no value for {seqeunce}");
  EXPECT_FALSE(fs::exists(options.output));
  options.burn_ins = {BurnIn{"x", "middle", 0}};
  report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_NE(report.error().reason.find("unknown burn-in position 'middle'"), std::string::npos);
}

TEST_F(TranscodeTest, ProresInMp4IsRejected) {
  TranscodeOptions options = beachball_options(dir_.file("review.mp4"));
  options.codec = "prores";
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(dir_.entries().empty());
}

TEST_F(TranscodeTest, UnknownCodecIsInvalidArgument) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.codec = "mpeg2";
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(report.error().reason.find("mpeg2"), std::string::npos) << report.error().reason;
}

TEST_F(TranscodeTest, NoFramesIsInvalidArgument) {
  TranscodeOptions options;
  options.output = dir_.file("review.mov");
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(report.error().reason, "no frames to encode");
}

// Frames 1-8 with frame 5 replaced by a file that does not exist; ProRes so
// equal pictures decode to equal bytes.
TranscodeOptions with_frame_5_missing(const std::string& output, MissingFramePolicy policy) {
  TranscodeOptions options = beachball_options(output);
  options.frames[4] = (fs::path(output).parent_path() / "nonexistent.0005.exr").string();
  options.codec = "prores";
  options.max_width = 256;
  options.missing = policy;
  return options;
}

TEST_F(TranscodeTest, HoldPolicyRepeatsThePreviousFrameForAMissingFile) {
  const std::string movie = dir_.file("hold.mov");
  const TranscodeReport report =
      transcode_ok(with_frame_5_missing(movie, MissingFramePolicy::kHold));
  EXPECT_EQ(report.frames_written, 8u);
  EXPECT_EQ(report.frames_missing, 1u);
  EXPECT_EQ(probe(movie)["nb_read_frames"], "8");
  const std::vector<std::string> md5s = frame_md5s(movie);
  ASSERT_EQ(md5s.size(), 8u);
  EXPECT_EQ(md5s[4], md5s[3]);
  EXPECT_NE(md5s[5], md5s[4]);
}

TEST_F(TranscodeTest, BlackPolicyInsertsABlackFrameForAMissingFile) {
  const std::string movie = dir_.file("black.mov");
  const TranscodeReport report =
      transcode_ok(with_frame_5_missing(movie, MissingFramePolicy::kBlack));
  EXPECT_EQ(report.frames_written, 8u);
  EXPECT_EQ(report.frames_missing, 1u);
  EXPECT_EQ(probe(movie)["nb_read_frames"], "8");
  const std::vector<std::string> md5s = frame_md5s(movie);
  ASSERT_EQ(md5s.size(), 8u);
  EXPECT_NE(md5s[4], md5s[3]);
  EXPECT_EQ(max_luma(movie, 4), 16) << "frame 5 is not black";
  EXPECT_GT(max_luma(movie, 3), 100);
}

TEST_F(TranscodeTest, FailPolicyStopsAtTheMissingFrameNumberAndLeavesNoFile) {
  const std::string movie = dir_.file("fail.mov");
  Result<TranscodeReport> report =
      transcode(with_frame_5_missing(movie, MissingFramePolicy::kFail));
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(report.error().reason, "missing frame 5");
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{}) << "temporary file left behind";
}

TEST_F(TranscodeTest, MissingMessageUsesFrameNumbersNotPositions) {
  TranscodeOptions options = with_frame_5_missing(dir_.file("fail.mov"), MissingFramePolicy::kFail);
  options.frame_numbers = {1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008};
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().reason, "missing frame 1005");
}

TEST_F(TranscodeTest, MissingFirstFrameUnderHoldIsBlackAndSizeComesFromTheFirstReadable) {
  const std::string movie = dir_.file("hold.mov");
  TranscodeOptions options = beachball_options(movie);
  options.frames = {"", beachball(1), beachball(2)};
  options.frame_numbers = {0, 1, 2};
  options.max_width = 256;
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.frames_written, 3u);
  EXPECT_EQ(report.frames_missing, 1u);
  EXPECT_EQ(report.width, 256u);
  EXPECT_EQ(report.height, 194u);  // 1556 * 256 / 2048 = 194.5 -> 195 -> even 194
  EXPECT_LE(max_luma(movie, 0), 17) << "frame 0 is not black";
  EXPECT_GT(max_luma(movie, 1), 100);
}

TEST_F(TranscodeTest, MissingFramesBeforeTheFirstReadableDoNotStallAOneFrameBuffer) {
  const std::string movie = dir_.file("late.mov");
  TranscodeOptions options = beachball_options(movie);
  options.frames = {"", dir_.file("gone.0002.exr"), beachball(3), beachball(4), beachball(5)};
  options.frame_numbers = {1, 2, 3, 4, 5};
  options.max_width = 256;
  options.decode_ahead = 1;
  options.missing = MissingFramePolicy::kBlack;
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.frames_written, 5u);
  EXPECT_EQ(report.frames_missing, 2u);
  EXPECT_LE(report.peak_frames_ahead, 2u);  // the buffer's one, and the first readable frame
  EXPECT_EQ(probe(movie)["nb_read_frames"], "5");
}

TEST_F(TranscodeTest, AllFramesMissingFailsWithNoReadableFrames) {
  TranscodeOptions options;
  options.frames = {dir_.file("a.0001.exr"), dir_.file("a.0002.exr")};
  options.output = dir_.file("none.mov");
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(report.error().reason, "no readable frames");
  EXPECT_TRUE(dir_.entries().empty());
}

TEST_F(TranscodeTest, UndecodableFrameFailsTheTranscodeNamingTheFileAndLeavesNoFile) {
  const std::string bad = dir_.file("bad.0003.exr");
  std::ofstream(bad) << "this is not an exr file\n";
  TranscodeOptions options = beachball_options(dir_.file("out.mov"));
  options.frames[2] = bad;
  options.max_width = 256;
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_NE(report.error().code, ErrorCode::kNotFound);
  EXPECT_NE(report.error().reason.find(bad), std::string::npos) << report.error().reason;
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"bad.0003.exr"});
}

TEST_F(TranscodeTest, FailedTranscodeLeavesAnExistingOutputUntouched) {
  const std::string movie = dir_.file("review.mov");
  std::ofstream(movie) << "previous version";
  Result<TranscodeReport> report =
      transcode(with_frame_5_missing(movie, MissingFramePolicy::kFail));
  ASSERT_FALSE(report);
  std::ifstream in(movie);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "previous version");
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"review.mov"});
}

TEST_F(TranscodeTest, UnwritableOutputIsAnIoErrorNamingTheOutput) {
  TranscodeOptions options = beachball_options(dir_.file("no/such/dir/review.mov"));
  options.frames.resize(1);
  options.frame_numbers.resize(1);
  options.max_width = 256;
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kIo);
  EXPECT_NE(report.error().reason.find(options.output), std::string::npos) << report.error().reason;
}

TEST_F(TranscodeTest, ProgressIsCalledOncePerFrameFromTheCallingThread) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.max_width = 256;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  bool other_thread = false;
  const std::thread::id caller = std::this_thread::get_id();
  Result<TranscodeReport> report = transcode(options, [&](uint64_t done, uint64_t total) {
    calls.emplace_back(done, total);
    other_thread = other_thread || std::this_thread::get_id() != caller;
  });
  ASSERT_TRUE(report) << report.error().reason;
  std::vector<std::pair<uint64_t, uint64_t>> expected;
  for (uint64_t done = 1; done <= 8; ++done) expected.emplace_back(done, 8);
  EXPECT_EQ(calls, expected);
  EXPECT_FALSE(other_thread);
}

TEST_F(TranscodeTest, ReadingIsCalledOneAtATimeBeforeEveryDecodedFile) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.max_width = 256;
  options.decode_threads = 4;
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::mutex mutex;
  std::vector<std::string> paths;
  Result<TranscodeReport> report = transcode(options, {}, [&](const std::string& path) {
    if (inside.fetch_add(1) != 0) overlapped = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // widen any overlap
    {
      std::lock_guard<std::mutex> lock(mutex);
      paths.push_back(path);
    }
    inside.fetch_sub(1);
  });
  ASSERT_TRUE(report) << report.error().reason;
  EXPECT_FALSE(overlapped);
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  EXPECT_EQ(paths, beachball_frames());
}

TEST_F(TranscodeTest, EveryFrameLandsInItsPlaceWhenTheReorderBufferWrapsAround) {
  // 8 different pictures through a 2-frame buffer: each slot is reused 3 times.
  // ProRes is intra-only, so the same picture decodes to the same bytes.
  const std::string movie = dir_.file("order.mov");
  TranscodeOptions options = beachball_options(movie);
  options.codec = "prores";
  options.max_width = 256;
  options.decode_threads = 2;
  options.decode_ahead = 2;
  transcode_ok(options);
  const std::vector<std::string> md5s = frame_md5s(movie);
  ASSERT_EQ(md5s.size(), 8u);
  options.output = dir_.file("reference.mov");
  options.decode_threads = 1;
  options.decode_ahead = 1;
  transcode_ok(options);
  EXPECT_EQ(md5s, frame_md5s(options.output));
  std::vector<std::string> distinct = md5s;
  std::sort(distinct.begin(), distinct.end());
  EXPECT_EQ(std::unique(distinct.begin(), distinct.end()), distinct.end()) << "a frame repeats";
}

TEST_F(TranscodeTest, DecodeAheadBoundsTheFramesBufferedForTheEncoder) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.max_width = 256;
  options.decode_threads = 4;
  options.decode_ahead = 2;
  const TranscodeReport report = transcode_ok(options);
  EXPECT_EQ(report.frames_written, 8u);
  EXPECT_GE(report.peak_frames_ahead, 1u);
  EXPECT_LE(report.peak_frames_ahead, 2u);
}

// Mean of each channel of an image file, 0-1.
std::vector<float> channel_means(const std::string& path) {
  OIIO::ImageBuf image(path);
  const OIIO::ImageBufAlgo::PixelStats stats = OIIO::ImageBufAlgo::computePixelStats(image);
  if (image.has_error() || stats.avg.size() < 3) {
    ADD_FAILURE() << "cannot read " << path << ": " << image.geterror();
    return {};
  }
  return std::vector<float>(stats.avg.begin(), stats.avg.begin() + 3);
}

TEST_F(TranscodeTest, FirstFrameLooksLikeTheExrInSrgb) {
  const std::string movie = dir_.file("review.mov");
  TranscodeOptions options = beachball_options(movie);
  options.frames.resize(1);
  options.frame_numbers.resize(1);
  transcode_ok(options);

  const std::string frame_png = dir_.file("frame.png");
  const std::string reference_png = dir_.file("reference.png");
  ASSERT_EQ(run("ffmpeg -v error -i " + quoted(movie) + " -frames:v 1 " + quoted(frame_png)).status,
            0);
  ASSERT_EQ(run("oiiotool " + quoted(beachball(1)) +
                " --ch R,G,B --croptofull --colorconvert linear sRGB -d uint8 -o " +
                quoted(reference_png))
                .status,
            0);
  const std::vector<float> got = channel_means(frame_png);
  const std::vector<float> want = channel_means(reference_png);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_EQ(want.size(), 3u);
  for (size_t c = 0; c < 3; ++c) {
    // Chroma subsampling and 8-bit limited range move means by well under 1%;
    // linear values (no sRGB curve) would be ~40% darker.
    EXPECT_NEAR(got[c], want[c], 0.1 * want[c] + 0.002) << "channel " << c;
  }
}

// Every pixel of a decoded ProRes frame (10-bit 4:2:2, so chroma rounding is
// small) against oiiotool's linear -> sRGB of the same EXR: the fast path's
// table, the BT.709 matrix and the limited range, all checked together.
TEST_F(TranscodeTest, DecodedFrameMatchesOiiotoolSrgbPixelByPixel) {
  const std::string ramp = dir_.file("ramp.exr");
  // Dark to over-white ramps in each channel: the sRGB toe, the curve and the clamp.
  ASSERT_EQ(run("oiiotool --pattern fill:topleft=0,0,0:topright=1.5,0.6,0.05:"
                "bottomleft=0.01,0.3,1:bottomright=4,1,0.4 128x64 3 -d half -o " +
                quoted(ramp))
                .status,
            0);
  const std::string reference = dir_.file("reference.tif");
  ASSERT_EQ(run("oiiotool " + quoted(ramp) + " --colorconvert linear sRGB -d uint16 -o " +
                quoted(reference))
                .status,
            0);
  TranscodeOptions options;
  options.frames = {ramp};
  options.codec = "prores";
  const std::string movie = dir_.file("ramp.mov");
  options.output = movie;
  transcode_ok(options);
  const CommandOutput decoded = run(
      "ffmpeg -v error -i " + quoted(movie) +
      " -vf scale=in_color_matrix=bt709:in_range=tv:out_range=pc:flags=accurate_rnd+full_chroma_int"
      " -frames:v 1 -f rawvideo "
      "-pix_fmt rgb48le -");
  ASSERT_EQ(decoded.status, 0);
  ASSERT_EQ(decoded.out.size(), size_t{128} * 64 * 3 * 2);
  OIIO::ImageBuf want(reference);
  ASSERT_TRUE(want.read(0, 0, true, OIIO::TypeFloat)) << want.geterror();
  double worst = 0;
  double total = 0;
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 128; ++x) {
      for (int c = 0; c < 3; ++c) {
        const size_t at = ((size_t(y) * 128 + size_t(x)) * 3 + size_t(c)) * 2;
        const double got = (static_cast<unsigned char>(decoded.out[at]) |
                            static_cast<unsigned char>(decoded.out[at + 1]) << 8) /
                           65535.0;
        const double error = std::abs(got - want.getchannel(x, y, 0, c));
        worst = std::max(worst, error);
        total += error;
      }
    }
  }
  // 10-bit limited range is a step of ~0.0011. 4:2:2 shares chroma between
  // pixel pairs, which costs most where the colour is saturated and clipped
  // (the blue corner: ~0.04; ffmpeg's own encode of this file is off by 0.08
  // there and by 0.011 on average). Linear values in the movie (no sRGB
  // curve) would be off by up to ~0.3, BT.601 instead of BT.709 by several
  // percent on average.
  EXPECT_LT(worst, 0.06);
  EXPECT_LT(total / (128 * 64 * 3), 0.002);
}

// A frame with NaN and Inf pixels is repaired from its neighbours (the
// general path), not shown with black and white specks (what the fast path's
// table would make of them). The fast path finds them in its own pass over the
// values, for 4:2:0 (Yuv420Writer) and for swscale's formats alike, in the
// first frame (read before the decode pool starts) and in the pool's frames.
TEST_F(TranscodeTest, NanAndInfPixelsAreRepairedInEveryCodecsMovie) {
  const std::string clean = dir_.file("clean.exr");
  const std::string planted = dir_.file("planted.exr");
  {
    OIIO::ImageSpec spec(64, 48, 3, OIIO::TypeHalf);
    OIIO::ImageBuf grey(spec);
    const float value[3] = {0.18f, 0.18f, 0.18f};
    ASSERT_TRUE(OIIO::ImageBufAlgo::fill(grey, value));
    ASSERT_TRUE(grey.write(clean)) << grey.geterror();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const float bad[3][3] = {{nan, nan, nan}, {inf, inf, inf}, {-inf, 0.18f, nan}};
    grey.setpixel(20, 20, bad[0]);
    grey.setpixel(41, 30, bad[1]);
    grey.setpixel(10, 40, bad[2]);
    ASSERT_TRUE(grey.write(planted)) << grey.geterror();
  }
  for (const std::string codec : {"h264", "prores"}) {
    TranscodeOptions options;
    options.frames = {planted, clean, planted};
    options.codec = codec;
    options.output = dir_.file("repaired_" + codec + ".mov");
    transcode_ok(options);
    for (int index : {0, 2}) {
      const std::string grey = raw_frame(options.output, index, "gray");
      ASSERT_EQ(grey.size(), 64u * 48) << codec;
      const auto [low, high] = std::minmax_element(grey.begin(), grey.end(), [](char a, char b) {
        return static_cast<unsigned char>(a) < static_cast<unsigned char>(b);
      });
      EXPECT_LE(static_cast<unsigned char>(*high) - static_cast<unsigned char>(*low), 4)
          << codec << " frame " << index;
    }
  }
}

TEST_F(TranscodeTest, RedIsEncodedWithTheBt709MatrixInLimitedRange) {
  const std::string red = dir_.file("red.exr");
  ASSERT_EQ(
      run("oiiotool --create 64x48 3 --fill:color=1,0,0 64x48 -d half -o " + quoted(red)).status,
      0);
  TranscodeOptions options;
  options.frames = {red};
  options.output = dir_.file("red.mov");
  transcode_ok(options);
  const std::string yuv = raw_frame(options.output, 0, "yuv420p");
  ASSERT_EQ(yuv.size(), 64u * 48 * 3 / 2);
  double y = 0;
  for (size_t i = 0; i < 64 * 48; ++i) y += static_cast<unsigned char>(yuv[i]);
  y /= 64 * 48;
  const double cr = static_cast<unsigned char>(yuv[64 * 48 + 32 * 24 + 32 * 12 + 16]);
  // BT.709: Y = 16 + 219 * 0.2126 = 63 (BT.601 would give 82; full range 54).
  EXPECT_NEAR(y, 63, 3);
  EXPECT_NEAR(cr, 240, 3);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(TranscodeTest, AnOutputThatIsAHardLinkOfAFrameFailsAndLeavesTheFrameUntouched) {
  TranscodeOptions options = beachball_options(dir_.file("review.mov"));
  options.max_width = 128;
  const std::string frame = dir_.file("sb.0003.exr");
  fs::copy_file(options.frames[2], frame);
  options.frames[2] = frame;
  fs::create_hard_link(frame, options.output);
  const std::string before = file_bytes(frame);
  Result<TranscodeReport> report = transcode(options);
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().reason, "output " + options.output + " is the task's input " + frame +
                                       ": a job never overwrites what it reads");
  EXPECT_EQ(file_bytes(frame), before);
  EXPECT_EQ(dir_.entries(), (std::vector<std::string>{"review.mov", "sb.0003.exr"}));
}

TEST_F(TranscodeTest, AFullDiskFailsNamingTheOutputAndLeavesNoTemporary) {
  testing_support::FullDisk disk(dir_);
  TranscodeOptions options = beachball_options(disk.path() + "/review.mov");
  options.codec = "prores";  // big frames: 64 KiB fill at the first one
  Result<TranscodeReport> report = transcode(options);
  const bool empty = fs::is_empty(disk.path());
  disk.release();
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().reason.rfind("cannot write " + options.output + ": ", 0), 0u)
      << report.error().reason;
  EXPECT_NE(report.error().reason.find(disk.reason()), std::string::npos) << report.error().reason;
  EXPECT_TRUE(empty);
}

// Movies in segments (movie_join.h): encoded as the farm's segment tasks
// encode them, each on its own into the job's segment folder, then joined.

// `count` frames cycling through the 8 Beachball frames, numbered from 1001.
TranscodeOptions long_beachball(const std::string& output, size_t count) {
  TranscodeOptions options;
  for (size_t i = 0; i < count; ++i) {
    options.frames.push_back(beachball(static_cast<int>(i % 8) + 1));
    options.frame_numbers.push_back(1001 + static_cast<int64_t>(i));
  }
  options.output = output;
  options.max_width = 256;
  return options;
}

JoinOptions join_of(const TranscodeOptions& whole, const std::string& folder) {
  JoinOptions join;
  join.segment_dir = folder;
  join.frames = whole.frame_numbers;
  join.output = whole.output;
  join.codec = whole.codec;
  join.fps = whole.fps;
  join.slate = whole.slate;
  join.audio = whole.audio;
  join.audio_offset = whole.audio_offset;
  return join;
}

// Each `length` frames of `whole` encoded alone into `folder`, as a segment task does.
void encode_segments(const TranscodeOptions& whole, size_t length, const std::string& folder) {
  const size_t total = whole.frames.size();
  fs::create_directories(folder);  // the farm's media process makes it beneath its root
  for (size_t at = 0; at < total; at += length) {
    const size_t end = std::min(total, at + length);
    TranscodeOptions part = whole;
    part.frames.assign(whole.frames.begin() + static_cast<std::ptrdiff_t>(at),
                       whole.frames.begin() + static_cast<std::ptrdiff_t>(end));
    part.frame_numbers.assign(whole.frame_numbers.begin() + static_cast<std::ptrdiff_t>(at),
                              whole.frame_numbers.begin() + static_cast<std::ptrdiff_t>(end));
    part.movie = {whole.frame_numbers.front(), whole.frame_numbers.back(), total,
                  whole.frames[total / 2]};
    part.faststart = false;
    part.audio.clear();
    part.slate = whole.slate && at == 0;
    part.output = folder + "/" +
                  common::movie_segment_name(part.frame_numbers.front(), part.frame_numbers.back(),
                                             fs::path(whole.output).extension().string());
    transcode_ok(part);
  }
}

// `whole` encoded as one movie, and again in segments of `length` joined into
// `output` beside it: what each segment test compares.
struct Joined {
  TranscodeOptions options;  // the joined movie's
  std::string folder;
  Result<JoinReport> report;
};

Joined whole_and_joined(const TranscodeOptions& whole, const std::string& output, size_t length) {
  transcode_ok(whole);
  Joined joined{whole, {}, {}};
  joined.options.output = output;
  const fs::path path(output);
  joined.folder = (path.parent_path() / ("." + path.filename().string() + ".segments.1")).string();
  encode_segments(joined.options, length, joined.folder);
  joined.report = join_segments(join_of(joined.options, joined.folder));
  return joined;
}

// Every video packet's time in seconds and whether it is a key frame.
std::vector<std::pair<double, bool>> packet_times(const std::string& movie) {
  const CommandOutput output =
      run("ffprobe -v error -select_streams v:0 -show_entries packet=pts_time,flags -of csv=p=0 " +
          quoted(movie));
  EXPECT_EQ(output.status, 0) << "ffprobe packets " << movie;
  std::vector<std::pair<double, bool>> times;
  std::istringstream lines(output.out);
  for (std::string line; std::getline(lines, line);) {
    const size_t comma = line.find(',');
    if (comma == std::string::npos) continue;
    times.emplace_back(std::stod(line.substr(0, comma)), line[comma + 1] == 'K');
  }
  return times;
}

// Picture i at i/fps from 0 (to WebM's millisecond): the joined movie has no
// gap, repeat or jump at a seam.
void expect_even_times(const std::vector<std::pair<double, bool>>& times, size_t pictures,
                       double fps = 24) {
  ASSERT_EQ(times.size(), pictures);
  for (size_t i = 0; i < times.size(); ++i) {
    EXPECT_NEAR(times[i].first, static_cast<double>(i) / fps, 0.0006) << "packet " << i;
  }
}

// ProRes is all key frames: the joined movie is the whole encode, picture for picture.
TEST_F(TranscodeTest, AProresMovieInSegmentsIsTheWholeEncodePictureForPicture) {
  TranscodeOptions whole = long_beachball(dir_.file("whole.mov"), 40);
  whole.codec = "prores";
  const auto [joined, folder, report] = whole_and_joined(whole, dir_.file("joined.mov"), 16);
  ASSERT_TRUE(report) << report.error().reason;
  EXPECT_EQ(report->segments, 3u);
  EXPECT_EQ(report->pictures, 40u);
  EXPECT_EQ(frame_md5s(joined.output), frame_md5s(whole.output));
  expect_even_times(packet_times(joined.output), 40);
  auto a = probe(whole.output);
  auto b = probe(joined.output);
  for (const char* key :
       {"codec_name", "codec_tag_string", "profile", "pix_fmt", "width", "height", "r_frame_rate",
        "color_primaries", "color_transfer", "color_space", "color_range"}) {
    EXPECT_EQ(a[key], b[key]) << key;
  }
  EXPECT_FALSE(fs::exists(folder)) << "the segments go once the movie is in place";
  // Run again (its worker killed before the result reached the broker): the
  // folder is gone, the movie says it was joined from it: done, untouched.
  const auto before = fs::last_write_time(joined.output);
  Result<JoinReport> again = join_segments(join_of(joined, folder));
  ASSERT_TRUE(again) << again.error().reason;
  EXPECT_TRUE(again->already_joined);
  EXPECT_EQ(fs::last_write_time(joined.output), before);
  // Another folder's join finds no such note in the movie: it fails.
  Result<JoinReport> other = join_segments(join_of(joined, folder + "x"));
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().reason.find("cannot read the segment folder"), std::string::npos);
}

// H.264 with a slate, burn-ins and sound: every picture in its place, a key
// frame at each segment's start, the sound as long as the pictures, the
// index first, the colour note kept, and each seam's pictures as the whole
// encode's within the codec's loss.
TEST_F(TranscodeTest, AnH264MovieInSegmentsHasEveryPictureInPlaceAndNoSeam) {
  const std::string sound = dir_.file("sound.wav");
  ASSERT_EQ(
      run("ffmpeg -v error -y -f lavfi -i 'sine=frequency=440:duration=5' " + quoted(sound)).status,
      0);
  TranscodeOptions whole = long_beachball(dir_.file("whole.mp4"), 70);
  whole.slate = true;
  whole.burn_ins = {{"{frame} of {first}-{last}", "bottom-left"}};
  whole.values = {{"shot", "sh010"}, {"date", "2026-12-07"}};
  whole.audio = sound;
  const auto [joined, folder, report] = whole_and_joined(whole, dir_.file("joined.mp4"), 30);
  ASSERT_TRUE(report) << report.error().reason;
  EXPECT_EQ(report->segments, 3u);
  EXPECT_EQ(report->audio_encoder, "aac");

  auto info = probe(joined.output);
  EXPECT_EQ(info["nb_read_frames"], "71") << "70 pictures and the slate";
  EXPECT_EQ(info["codec_tag_string"], "avc1");
  expect_bt709(info);
  const auto times = packet_times(joined.output);
  expect_even_times(times, 71);
  // The slate and 30 pictures, then 30, then 10: each segment opens on a key frame.
  for (size_t start : {0u, 31u, 61u}) {
    ASSERT_LT(start, times.size());
    EXPECT_TRUE(times[start].second) << "no key frame at picture " << start;
  }
  const auto boxes = top_level_boxes(joined.output);
  EXPECT_LT(std::find(boxes.begin(), boxes.end(), "moov") - boxes.begin(),
            std::find(boxes.begin(), boxes.end(), "mdat") - boxes.begin());
  const CommandOutput durations =
      run("ffprobe -v error -show_entries stream=codec_type,duration -of csv=p=0 " +
          quoted(std::as_const(joined).output));
  double video = 0;
  double audio = 0;
  std::istringstream lines(durations.out);
  for (std::string line; std::getline(lines, line);) {
    const size_t comma = line.find(',');
    if (comma == std::string::npos) continue;
    (line.substr(0, comma) == "video" ? video : audio) = std::stod(line.substr(comma + 1));
  }
  EXPECT_NEAR(video, 71.0 / 24.0, 1e-3);
  EXPECT_NEAR(audio, video, 0.03) << "the sound ends with the pictures";
  EXPECT_NE(run("ffprobe -v error -show_entries format_tags=comment -of csv=p=0 " +
                quoted(std::as_const(joined).output))
                .out.find("farmhand colour"),
            std::string::npos);
  // At each seam and in the middle of a segment, the same picture as the whole encode.
  for (int index : {0, 30, 31, 45, 60, 61, 70}) {
    const std::string a = raw_frame(whole.output, index, "gray");
    const std::string b = raw_frame(joined.output, index, "gray");
    ASSERT_EQ(a.size(), b.size());
    ASSERT_FALSE(a.empty());
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff += std::abs((a[i] & 0xff) - (b[i] & 0xff));
    EXPECT_LT(diff / static_cast<double>(a.size()), 2.0) << "picture " << index;
  }
}

// Every codec joins: parameter sets alike in every segment, one packet per
// picture, evenly timed, tagged as the codec's whole movie is.
TEST_F(TranscodeTest, EveryCodecsMovieInSegmentsJoinsIntoOneEvenlyTimedStream) {
  for (const auto& [codec, name] :
       std::vector<std::pair<std::string, std::string>>{{"h265", "movie.mp4"},
                                                        {"vp9", "movie.webm"},
                                                        {"av1", "movie.webm"},
                                                        {"dnxhr", "movie.mov"},
                                                        {"h264", "movie.mov"}}) {
    SCOPED_TRACE(codec + " " + name);
    TranscodeOptions whole = long_beachball(dir_.file(codec + "-whole-" + name), 36);
    whole.codec = codec;
    const auto [joined, folder, report] =
        whole_and_joined(whole, dir_.file(codec + "-" + name), 15);
    ASSERT_TRUE(report) << report.error().reason;
    EXPECT_EQ(report->segments, 3u);
    auto a = probe(whole.output);
    auto b = probe(joined.output);
    EXPECT_EQ(b["nb_read_frames"], "36");
    for (const char* key : {"codec_name", "codec_tag_string", "pix_fmt", "width", "height",
                            "r_frame_rate", "color_primaries", "color_transfer", "color_space",
                            "color_range", "sample_aspect_ratio"}) {
      EXPECT_EQ(a[key], b[key]) << key;
    }
    const auto times = packet_times(joined.output);
    expect_even_times(times, 36);
    for (size_t start : {0u, 15u, 30u}) {
      ASSERT_LT(start, times.size());
      EXPECT_TRUE(times[start].second) << "no key frame at picture " << start;
    }
    // Every container keeps the note that lets a join run again know its movie.
    Result<JoinReport> again = join_segments(join_of(joined, folder));
    ASSERT_TRUE(again) << again.error().reason;
    EXPECT_TRUE(again->already_joined);
  }
}

// A long streamed movie has thousands of segments: the join keeps one open
// at a time, so it needs no more file descriptors than a short one.
TEST_F(TranscodeTest, AJoinOfMoreSegmentsThanOpenFilesAllowedSucceeds) {
  TranscodeOptions whole = long_beachball(dir_.file("many.mov"), 60);
  whole.codec = "prores";
  whole.max_width = 64;
  const std::string folder = dir_.file(".many.mov.segments.5");
  encode_segments(whole, 1, folder);  // 60 segments of one frame

  struct rlimit before {};

  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  struct rlimit low = before;
  low.rlim_cur = 40;  // fewer than the segments, enough for one and the movie
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  Result<JoinReport> report = join_segments(join_of(whole, folder));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &before), 0);
  ASSERT_TRUE(report) << report.error().reason;
  EXPECT_EQ(report->segments, 60u);
  EXPECT_EQ(probe(whole.output)["nb_read_frames"], "60");
}

TEST_F(TranscodeTest, AJoinWithASegmentMissingOrOfAnotherSizeFailsAndKeepsTheSegments) {
  TranscodeOptions whole = long_beachball(dir_.file("movie.mov"), 24);
  whole.codec = "prores";
  const std::string folder = dir_.file(".movie.mov.segments.3");
  encode_segments(whole, 8, folder);
  const std::string middle = folder + "/" + common::movie_segment_name(1009, 1016, ".mov");
  ASSERT_TRUE(fs::exists(middle));
  fs::rename(middle, dir_.file("aside.mov"));
  Result<JoinReport> gap = join_segments(join_of(whole, folder));
  ASSERT_FALSE(gap);
  EXPECT_NE(gap.error().reason.find("the segment starting at frame 1009 is missing from " + folder),
            std::string::npos)
      << gap.error().reason;
  EXPECT_FALSE(fs::exists(whole.output));

  // The middle segment again, at another size.
  TranscodeOptions other = whole;
  other.frames.assign(whole.frames.begin() + 8, whole.frames.begin() + 16);
  other.frame_numbers.assign(whole.frame_numbers.begin() + 8, whole.frame_numbers.begin() + 16);
  other.max_width = 128;
  other.faststart = false;
  other.output = middle;
  transcode_ok(other);
  Result<JoinReport> sizes = join_segments(join_of(whole, folder));
  ASSERT_FALSE(sizes);
  EXPECT_NE(sizes.error().reason.find("the sequence changes size"), std::string::npos)
      << sizes.error().reason;
  EXPECT_FALSE(fs::exists(whole.output));
  EXPECT_EQ(std::distance(fs::directory_iterator(folder), fs::directory_iterator()), 3)
      << "a failed join keeps its segments for the next attempt";
}

}  // namespace
}  // namespace farmhand::media
