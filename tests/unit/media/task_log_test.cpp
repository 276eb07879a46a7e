#include "workers/media/task_log.h"

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace farmhand::media {
namespace {

using std::chrono::microseconds;

ImageInfo frame_info() {
  ImageInfo info;
  info.width = 1024;
  info.height = 778;
  info.channels = 3;
  info.input_width = 2048;
  info.input_height = 1556;
  info.data_width = 911;
  info.data_height = 876;
  info.input_channels = 20;
  info.channels_read = "R,G,B";
  info.format = "jpeg";
  info.output_bytes = 2048;
  info.read_time = microseconds(41'000);
  info.process_time = microseconds(3'000);
  info.write_time = microseconds(2'000);
  return info;
}

int lines_in(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(TaskLogTest, AThumbnailSaysWhatItReadAndWroteAndHowLongEachStepTook) {
  EXPECT_EQ(thumbnail_log("/in/a.0001.exr", "/out/t.jpg", frame_info()),
            "read /in/a.0001.exr: 2048x1556 (data 911x876), R,G,B of 20 channels\n"
            "wrote /out/t.jpg: jpeg 1024x778, 3 channels, 2.0 KiB\n"
            "time: read 41 ms, process 3 ms, write 2 ms\n");
}

TEST(TaskLogTest, AShortSequenceListsEveryFrameThenTheTotals) {
  FrameLog log(10, 3);
  std::string text;
  for (int frame = 1; frame <= 4; ++frame) {
    text +=
        log.add(convert_frame_line(frame, "/in/a.exr", "/out/a.jpg", frame_info()), frame_info());
  }
  EXPECT_EQ(lines_in(text), 4) << text;
  EXPECT_EQ(text.rfind("frame 1: read /in/a.exr 2048x1556 (data 911x876), R,G,B of 20 channels "
                       "in 41 ms; processed in 3 ms; wrote /out/a.jpg jpeg 1024x778, 3 channels, "
                       "2.0 KiB in 2 ms\n",
                       0),
            0u)
      << text;
  EXPECT_EQ(log.finish(),
            "converted 4 frames: read 164 ms, process 12 ms, write 8 ms; wrote 8.0 KiB\n");
}

TEST(TaskLogTest, ALongSequenceListsTheFirstAndLastFramesAndCountsTheRest) {
  FrameLog log(10, 3);
  std::string text;
  for (int frame = 1; frame <= 5000; ++frame) {
    text += log.add("frame " + std::to_string(frame) + "\n", frame_info());
  }
  text += log.finish();
  EXPECT_EQ(lines_in(text), 10 + 1 + 3 + 1) << text;
  EXPECT_NE(text.find("frame 10\n... 4987 frames not listed\nframe 4998\nframe 4999\nframe 5000\n"
                      "converted 5000 frames: "),
            std::string::npos)
      << text;
}

TEST(TaskLogTest, ATranscodeSaysWhatItReadWhatWasMissingAndWhatItWrote) {
  TranscodeReport report;
  report.frames_written = 8;
  report.frames_missing = 2;
  report.missing_frames = {"3", "5"};
  report.input_width = 2048;
  report.input_height = 1556;
  report.width = 2048;
  report.height = 1556;
  report.encoder = "libx264";
  report.output_bytes = 3 << 20;
  report.decode_threads = 2;
  report.decode_time = microseconds(1'250'000);
  report.wait_time = microseconds(300);
  report.encode_time = microseconds(400'000);
  EXPECT_EQ(transcode_log("/in/a.####.exr", "1-8", "/out/a.mov", 24, "", report),
            "read /in/a.####.exr frames 1-8: 6 frames, 2048x1556, R,G,B\n"
            "missing 2 frames (hold): 3, 5\n"
            "wrote /out/a.mov: libx264 2048x1556, 8 frames at 24 fps, 3.0 MiB\n"
            "time: decode 1.25 s over 2 threads, encoder waited 300 us, encode and write 400 "
            "ms\n");
}

}  // namespace
}  // namespace farmhand::media
