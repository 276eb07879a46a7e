// What a review movie's writers share (transcode.cpp writes a movie or one
// segment of it, movie_join.cpp joins segments): the muxer over an
// OutputFile, the frame rate as a rational, the output's extension.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/rational.h>
}

#include "common/result.h"
#include "workers/media/av_util.h"
#include "workers/media/output_file.h"

namespace farmhand::media {

// NTSC-family rates are written rounded (23.976, 29.97, 59.94) but mean
// N*1000/1001; av_d2q alone would store 23.976 as 2997/125 and the movie
// would drift from its audio and from every other tool's 24000/1001.
inline AVRational frame_rate(double fps) {
  const double whole = std::round(fps * 1.001);
  if (std::abs(fps - std::round(fps)) > 1e-6 && whole >= 1 &&
      std::abs(fps - whole * 1000.0 / 1001.0) < 0.005) {
    return AVRational{static_cast<int>(whole) * 1000, 1001};
  }
  return av_d2q(fps, 1001000);
}

// ".mp4", ".mov", ".webm" whatever the case written.
inline std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// A libavformat muxer writing into an OutputFile's temporary file; commit()
// closes it and renames it over the output.
class Muxer {
 public:
  Muxer(std::string output, OutputFile file) : file_(std::move(file)), output_(std::move(output)) {}

  ~Muxer() {
    if (context_ && context_->pb) avio_closep(&context_->pb);
    avformat_free_context(context_);
  }

  Muxer(const Muxer&) = delete;
  Muxer& operator=(const Muxer&) = delete;

  [[nodiscard]] Result<void> allocate(const char* format_name) {
    const int result =
        avformat_alloc_output_context2(&context_, nullptr, format_name, file_.write_path().c_str());
    if (result < 0 || !context_) {
      return fail(ErrorCode::kInternal,
                  std::string("cannot create ") + format_name + " muxer: " + av_error_text(result));
    }
    return {};
  }

  AVFormatContext* context() const { return context_; }

  [[nodiscard]] Result<void> open() {
    const int result = avio_open(&context_->pb, file_.write_path().c_str(), AVIO_FLAG_WRITE);
    if (result < 0) return write_error(result);
    return {};
  }

  tl::unexpected<Error> write_error(int code) const {
    return fail(ErrorCode::kIo, "cannot write " + output_ + ": " + av_error_text(code));
  }

  [[nodiscard]] Result<void> commit(const std::vector<std::string>& reads) {
    const int result = avio_closep(&context_->pb);
    if (result < 0) return write_error(result);
    return file_.commit(reads);
  }

 private:
  OutputFile file_;
  std::string output_;
  AVFormatContext* context_ = nullptr;
};

}  // namespace farmhand::media
