#include "workers/media/task_log.h"

#include <fmt/format.h>

namespace farmhand::media {

namespace {

// "2048x1556 (data 911x876), R,G,B of 20 channels": what was read of an image.
std::string input_text(const ImageInfo& info) {
  std::string text = fmt::format("{}x{}", info.input_width, info.input_height);
  if (info.data_width != 0 &&
      (info.data_width != info.input_width || info.data_height != info.input_height)) {
    text += fmt::format(" (data {}x{})", info.data_width, info.data_height);
  }
  if (!info.channels_read.empty()) {
    text += fmt::format(", {} of {} channel{}", info.channels_read, info.input_channels,
                        info.input_channels == 1 ? "" : "s");
  }
  return text;
}

// "jpeg 256x195, 3 channels, 12.3 KiB": what was written.
std::string output_text(const ImageInfo& info) {
  return fmt::format("{} {}x{}, {} channel{}, {}", info.format.empty() ? "image" : info.format,
                     info.width, info.height, info.channels, info.channels == 1 ? "" : "s",
                     size_text(info.output_bytes));
}

}  // namespace

std::string duration_text(std::chrono::microseconds duration) {
  const int64_t us = duration.count() < 0 ? 0 : duration.count();
  if (us < 1000) return fmt::format("{} us", us);
  if (us < 1'000'000) return fmt::format("{} ms", us / 1000);
  return fmt::format("{:.2f} s", static_cast<double>(us) / 1e6);
}

std::string size_text(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string thumbnail_log(const std::string& input, const std::string& output,
                          const ImageInfo& info) {
  return fmt::format("read {}: {}\nwrote {}: {}\ntime: read {}, process {}, write {}\n", input,
                     input_text(info), output, output_text(info), duration_text(info.read_time),
                     duration_text(info.process_time), duration_text(info.write_time));
}

std::string convert_frame_line(int64_t frame, const std::string& input, const std::string& output,
                               const ImageInfo& info) {
  return fmt::format("frame {}: read {} {} in {}; processed in {}; wrote {} {} in {}\n", frame,
                     input, input_text(info), duration_text(info.read_time),
                     duration_text(info.process_time), output, output_text(info),
                     duration_text(info.write_time));
}

std::string transcode_log(const std::string& input_pattern, const std::string& frames,
                          const std::string& output, double fps, const std::string& missing,
                          const TranscodeReport& report) {
  const uint64_t read = report.frames_written - report.frames_missing;
  std::string text =
      fmt::format("read {} frames {}: {} frame{}, {}x{}, R,G,B\n", input_pattern, frames, read,
                  read == 1 ? "" : "s", report.input_width, report.input_height);
  if (report.frames_missing > 0) {
    std::string listed;
    for (const auto& frame : report.missing_frames) {
      if (!listed.empty()) listed += ", ";
      listed += frame;
    }
    if (report.frames_missing > report.missing_frames.size()) listed += ", ...";
    text += fmt::format("missing {} frame{} ({}): {}\n", report.frames_missing,
                        report.frames_missing == 1 ? "" : "s", missing.empty() ? "hold" : missing,
                        listed);
  }
  text += fmt::format("wrote {}: {} {}x{}, {} frame{} at {:g} fps, {}\n", output, report.encoder,
                      report.width, report.height, report.frames_written,
                      report.frames_written == 1 ? "" : "s", fps, size_text(report.output_bytes));
  text += fmt::format("time: decode {} over {} thread{}, encoder waited {}, encode and write {}\n",
                      duration_text(report.decode_time), report.decode_threads,
                      report.decode_threads == 1 ? "" : "s", duration_text(report.wait_time),
                      duration_text(report.encode_time));
  return text;
}

std::string FrameLog::add(const std::string& line, const ImageInfo& info) {
  ++frames_;
  bytes_ += info.output_bytes;
  read_ += info.read_time;
  process_ += info.process_time;
  write_ += info.write_time;
  if (frames_ <= first_listed_) return line;
  held_.push_back(line);
  if (held_.size() > last_listed_) {
    held_.pop_front();
    ++left_out_;
  }
  return "";
}

std::string FrameLog::finish() const {
  std::string text;
  if (left_out_ > 0) {
    text += fmt::format("... {} frame{} not listed\n", left_out_, left_out_ == 1 ? "" : "s");
  }
  for (const auto& line : held_) text += line;
  if (frames_ > 0) {
    text += fmt::format("converted {} frame{}: read {}, process {}, write {}; wrote {}\n", frames_,
                        frames_ == 1 ? "" : "s", duration_text(read_), duration_text(process_),
                        duration_text(write_), size_text(bytes_));
  }
  return text;
}

}  // namespace farmhand::media
