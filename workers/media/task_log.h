// Media task logs: what a thumbnail, convert or transcode task read and wrote
// and how long each step took, as lines for the task's log (`farmhand logs`
// shows them as it shows a command's output).
//
// Concise by design: a few lines a task, one a frame for short sequences.
// FrameLog lists the first frames as they are done and, past those, only the
// last few, after a line saying how many it left out, so a 10,000-frame task
// writes a screenful, not 10,000 lines.
//
// Pure text: no I/O, no clock. Not thread-safe (one FrameLog per request).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "workers/media/image_ops.h"
#include "workers/media/transcode.h"

namespace farmhand::media {

// "850 us", "41 ms", "1.25 s".
std::string duration_text(std::chrono::microseconds duration);

// "812 B", "12.3 KiB", "3.1 MiB".
std::string size_text(uint64_t bytes);

// A thumbnail's log: what it read, what it wrote, how long each step took.
//   read /show/sh010/comp.1001.exr: 2048x1556 (data 911x876), R,G,B of 20 channels
//   wrote /show/sh010/thumb.jpg: jpeg 256x195, 3 channels, 12.3 KiB
//   time: read 41 ms, process 3 ms, write 2 ms
std::string thumbnail_log(const std::string& input, const std::string& output,
                          const ImageInfo& info);

// One converted frame, on one line:
//   frame 1001: read /in/comp.1001.exr 2048x1556 (data 911x876), R,G,B of 20 channels in 41 ms;
//   processed in 3 ms; wrote /out/comp.1001.jpg jpeg 1024x778, 120.1 KiB in 8 ms
std::string convert_frame_line(int64_t frame, const std::string& input, const std::string& output,
                               const ImageInfo& info);

// A transcode's log: the frames read (and any missing), the movie written, the time.
std::string transcode_log(const std::string& input_pattern, const std::string& frames,
                          const std::string& output, double fps, const std::string& missing,
                          const TranscodeReport& report);

// The frames of a task, capped: the first `first_listed` lines as they come,
// then only the last `last_listed`, given out by finish() after a line
// counting those left out, and a summary of the totals.
class FrameLog {
 public:
  explicit FrameLog(size_t first_listed = 10, size_t last_listed = 3)
      : first_listed_(first_listed), last_listed_(last_listed) {}

  // Counts a done frame; returns what to write now ("" when held back).
  std::string add(const std::string& line, const ImageInfo& info);

  // What is held back, the count of frames left out, and the totals:
  //   converted 20 frames: read 0.82 s, process 61 ms, write 0.16 s; wrote 2.3 MiB
  std::string finish() const;

 private:
  size_t first_listed_;
  size_t last_listed_;
  uint64_t frames_ = 0;
  std::deque<std::string> held_;
  uint64_t left_out_ = 0;
  uint64_t bytes_ = 0;
  std::chrono::microseconds read_{0};
  std::chrono::microseconds process_{0};
  std::chrono::microseconds write_{0};
};

}  // namespace farmhand::media
