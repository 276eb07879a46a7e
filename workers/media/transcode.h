// Transcode: an image sequence to a review movie with libavcodec/libavformat.
//
// Frames are decoded (OpenImageIO: R,G,B of the first subimage, displayed
// picture, linear -> sRGB) by a small pool of threads, at most `decode_ahead`
// frames ahead of the encoder, so memory does not grow with the length of the
// sequence. libswscale converts to the codec's pixel format and the stream is
// tagged BT.709 (primaries, transfer, matrix). The codecs and their
// containers are common/review_codecs.h's: H.264 (libx264, high) and H.265
// (libx265, tagged hvc1) in .mp4 or .mov, VP9 (libvpx-vp9) and AV1
// (libsvtav1, else libaom) in .webm or .mp4, all yuv420p at even dimensions
// and square pixels; ProRes 422 HQ (prores_ks profile 3) and DNxHR HQ in .mov.
// MP4 and MOV are written index first (+faststart). The movie is written to a temporary file in
// the output's directory and renamed when complete, never over one of its
// input frames (workers/media/output_file.h); on failure the temporary file is
// removed and an existing output is left untouched.
//
// Colour: the sRGB-encoded display values are converted with the BT.709 matrix
// to limited ("tv") range, and primaries, transfer and matrix are all tagged
// bt709, the review-movie convention players handle consistently (see
// transcode.cpp for why not iec61966-2-1).
//
// The movie's size is the displayed size of the first readable frame, fitted
// to max_width, rounded down to even; every frame is fitted to that size.
// Missing frames (empty path, or no such file) follow `missing`; a file that
// exists but cannot be decoded fails the transcode ("cannot read FILE: ...").
// If no frame at all can be found the transcode fails ("no readable frames").
//
// Runs in the media process (decoders may abort on hostile files). One call at
// a time per process; internally multi-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/review_codecs.h"
#include "workers/media/output_file.h"
#include "workers/media/review_overlay.h"

namespace farmhand::media {

enum class MissingFramePolicy { kHold, kBlack, kFail };

struct TranscodeOptions {
  // One path per frame, in movie order. An empty string or a file that does
  // not exist is a missing frame, handled by `missing`.
  std::vector<std::string> frames;
  // For messages ("missing frame 1012"): empty, or one per frame; when empty
  // frames are named by their position, from 1.
  std::vector<int64_t> frame_numbers;
  std::string output;          // .mov, .mp4 or .webm (common/review_codecs.h: which codec where)
  std::string codec = "h264";  // h264 | h265 | vp9 | av1 | prores | dnxhr
  double fps = 24.0;           // 23.976, 29.97, 59.94... are stored exactly as N*1000/1001
  int crf = -1;                // -1: the codec's default; prores and dnxhr take none
  std::string preset = "veryfast";  // h264 and h265
  int gop = common::kReviewGopFrames;
  MissingFramePolicy missing = MissingFramePolicy::kHold;
  uint32_t max_width = 0;  // 0: the displayed size (rounded to even); else scaled down to fit
  int decode_threads = 0;  // 0: number of cores
  int decode_ahead = 8;    // frames decoded ahead of the encoder, at most
  // How linear frames are shown (image_ops.h); web codecs prefer an OCIO
  // config's "sRGB" display when none is chosen.
  ColourChoice colour;
  // A sound file (WAV, AIFF, FLAC...) muxed beside the pictures, delayed by
  // `audio_offset` frames (negative: its start is cut), and exactly as long as
  // the pictures (workers/media/audio_track.h). Empty: no sound.
  std::string audio{};
  int64_t audio_offset = 0;
  // Burn-ins drawn on every picture (review_overlay.h), and a slate frame
  // before the first picture: `values` fill both templates and the slate's
  // fields (shot, version, artist; date defaults to today). With a slate the
  // movie has one frame more, and the sound starts with the first picture.
  std::vector<BurnIn> burn_ins{};
  bool slate = false;
  std::map<std::string, std::string> values{};
  std::string font{};      // empty: DejaVu Sans
  OutputPlace place = {};  // where the broker placed `output`; empty: its parent as written

  // A segment of a longer movie (workers/media/movie_join.h): `frames` are
  // this segment's, and the movie's span fills {first}, {last} and the
  // slate's range, its middle frame is the slate's poster. Zero frames: the
  // movie is `frames`.
  struct MovieSpan {
    int64_t first = 0;
    int64_t last = 0;
    uint64_t frames = 0;
    std::string poster{};
  };

  MovieSpan movie{};
  // MP4 and MOV index first; a segment, read only by the join, skips the rewrite.
  bool faststart = true;
};

struct TranscodeReport {
  uint64_t frames_written = 0;  // pictures (a slate is not counted)
  bool slate = false;
  uint64_t frames_missing = 0;  // held or black
  uint32_t width = 0;
  uint32_t height = 0;
  // The most frames decoded or being decoded ahead of the encoder at one time:
  // the bound that keeps memory flat. At most decode_ahead, plus one while
  // frames before the first readable one (which sets the size) are missing.
  uint32_t peak_frames_ahead = 0;
  // For the task's log.
  static constexpr size_t kMissingListed = 10;
  std::vector<std::string> missing_frames;  // the first kMissingListed, by frame number
  uint32_t input_width = 0;                 // the first readable frame's displayed size
  uint32_t input_height = 0;
  std::string audio_encoder;  // "aac", "pcm_s24le", "pcm_s16le", "libopus"; empty: no sound
  std::string encoder;  // "libx264", "libx265", "libvpx-vp9", "libsvtav1", "prores_ks", "dnxhd"
  uint64_t output_bytes = 0;
  uint32_t decode_threads = 0;
  std::chrono::microseconds decode_time{0};  // reading and converting frames, over every thread
  std::chrono::microseconds wait_time{0};    // the encoder waiting for the next frame
  std::chrono::microseconds encode_time{0};  // encoding, muxing, the trailer and the rename
};

// `progress(done, total)` is called from the calling thread after each encoded frame.
// `reading(path)` is called (from any decode thread, serialized) before a frame is
// decoded, so a crash can be attributed to the file being read.
[[nodiscard]] Result<TranscodeReport> transcode(
    const TranscodeOptions& options,
    const std::function<void(uint64_t done, uint64_t total)>& progress = {},
    const std::function<void(const std::string& path)>& reading = {});

}  // namespace farmhand::media
