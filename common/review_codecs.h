// Review codecs: which codecs a review movie may use, in which containers,
// and how their quality number (crf) reads. One table for the broker, which
// refuses a bad submit with one line, and the media process, which encodes
// (workers/media/transcode.cpp maps each to its libavcodec encoder).
//
//   codec   encoder                    containers        crf (default)
//   h264    libx264, high, yuv420p     .mp4 .mov         0-51 (23)
//   h265    libx265, main, yuv420p     .mp4 .mov         0-51 (28)
//   vp9     libvpx-vp9, yuv420p        .webm .mp4        0-63 (32)
//   av1     libsvtav1, yuv420p         .mp4 .webm        0-63 (35)
//   prores  prores_ks 422 HQ           .mov              -
//   dnxhr   dnxhd DNxHR HQ             .mov              -
//
// Web codecs (h264, h265, vp9, av1) get even dimensions, square pixels and
// BT.709 tags like every review movie; MP4 and MOV are written with the index
// first (+faststart), so a browser plays before the download ends.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace farmhand::common {

struct ReviewCodec {
  std::string name;
  std::vector<std::string> containers;  // extensions without the dot, lower case; first: default
  int crf_max = 0;                      // 0: the codec takes no crf
  int crf_default = 0;
  bool web = false;  // plays in a browser (the web review formats)
};

// Every codec, in the order above.
const std::vector<ReviewCodec>& review_codecs();

// The codec named `name`; else "unknown codec 'x264' (h264, h265, vp9, av1, prores, dnxhr)".
[[nodiscard]] Result<ReviewCodec> review_codec(const std::string& name);

// That `codec` can go into a file ending in `extension` (without the dot, any
// case); else "codec vp9 cannot go into OUTPUT (use .webm or .mp4)".
[[nodiscard]] Result<void> check_review_container(const ReviewCodec& codec,
                                                  const std::string& extension,
                                                  const std::string& output);

// The crf to use: `text` empty gives the codec's default; else it must be a
// whole number in the codec's range ("bad crf '70' for vp9 (0-63)").
[[nodiscard]] Result<int> review_crf(const ReviewCodec& codec, const std::string& text);

// Every review movie has an IDR frame at least every this many pictures; a
// movie in segments (workers/media/movie_join.h) cuts them at whole GOPs.
inline constexpr int kReviewGopFrames = 30;

// A movie segment's file name in its job's segment folder: "seg.1001.1060.mp4"
// for frames 1001 to 1060 of a movie whose output ends in `extension` (".mp4" or "mp4").
inline std::string movie_segment_name(int64_t first, int64_t last, std::string extension) {
  if (!extension.empty() && extension.front() == '.') extension.erase(0, 1);
  for (char& c : extension) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return "seg." + std::to_string(first) + "." + std::to_string(last) + "." + extension;
}

// A burn-in as written on the command line or in a rule: "TEXT", or
// "POSITION=TEXT" with POSITION one of top-left, top, top-right, bottom-left,
// bottom, bottom-right. Without one, the n-th burn-in (from 0) goes to
// bottom-left, bottom-right, top-left, top-right, bottom, top in turn.
struct BurnInSpec {
  std::string position;
  std::string text;
};

[[nodiscard]] Result<BurnInSpec> parse_burn_in(const std::string& written, size_t index);

// The names a burn-in's text reads ({shot} -> "shot"), in order.
std::vector<std::string> burn_in_names(const std::string& text);

// The names every movie has: frame, timecode, first, last, fps, date.
bool is_builtin_review_name(const std::string& name);

// A burn-in colour as 8-bit R, G, B: #RRGGBB or one of white, black, grey,
// red, green, blue, yellow, cyan, magenta, orange; else "bad burn-in colour
// 'x' (#RRGGBB or white, black, grey, ...)".
[[nodiscard]] Result<std::array<int, 3>> burn_in_rgb(const std::string& colour);

// Several burn-ins in one parameter: one per line.
[[nodiscard]] Result<std::vector<BurnInSpec>> parse_burn_ins(const std::string& lines);

}  // namespace farmhand::common
