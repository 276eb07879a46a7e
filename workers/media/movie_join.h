// A movie encoded in segments by several workers (`farmhand submit transcode
// --segments N`, and every movie that follows a render frame by frame), and
// the join that makes them one file.
//
// Each segment is a task of whole GOPs, encoded on its own (transcode.h with
// a MovieSpan) into the job's segment folder beside the output,
// `.NAME.segments.TOKEN/`, as `seg.FIRST.LAST.EXT` (common/review_codecs.h:
// its first and last frame numbers; the container the movie's). A fresh encoder starts every
// segment with an IDR frame and the encoders make no B-frames, so the segments join by stream copy
// with no seam.
//
// join_segments() reads the folder, checks that the segments cover the
// movie's frames exactly (no gap, no overlap) and that all have the first
// one's codec, size, pixel format, colour tags and parameter sets (extradata),
// then copies every packet into the movie, its timestamps moved by the
// pictures before it, muxes the sound (audio_track.h) and writes the index
// first (+faststart). The movie is written as transcode writes one (a
// temporary file renamed over the output, never over a file it reads); the
// segments are removed only once it is in place, so a failed or killed join
// can run again. Its comment ends "joined from .NAME.segments.TOKEN": a join
// run again once the folder is gone finds its movie there and succeeds.
//
// Errors are one line naming what was wrong: "segment frames 1031-1060 is
// missing from /p/.movie.mp4.segments.1a2b", "segment seg.1031.1060.mp4 is
// 1024x540, the movie 2048x1080: the sequence changes size; encode it
// without --segments".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "workers/media/output_file.h"

namespace farmhand::media {

struct JoinOptions {
  std::string segment_dir;        // the segments, named by common::movie_segment_name()
  std::vector<int64_t> frames{};  // the movie's frame numbers, in order
  std::string output;             // .mov, .mp4 or .webm, as the segments
  std::string codec = "h264";     // for the sound's encoder (audio_track.h)
  double fps = 24.0;
  bool slate = false;           // the first segment starts with a slate picture
  std::string audio{};          // a sound file, muxed here; empty: none
  int64_t audio_offset = 0;     // in frames of the movie
  OutputPlace place = {};       // where the broker placed `output`
  bool remove_segments = true;  // once the movie is in place
};

struct JoinReport {
  uint64_t segments = 0;
  uint64_t pictures = 0;  // with the slate
  uint64_t packets = 0;
  uint32_t width = 0;
  uint32_t height = 0;
  std::string audio_encoder;  // empty: no sound
  // The folder was gone and the movie says it was joined from it: a join run
  // again after it finished (its result lost to a killed worker) succeeds.
  bool already_joined = false;
  uint64_t output_bytes = 0;
  std::chrono::microseconds time{0};
};

[[nodiscard]] Result<JoinReport> join_segments(const JoinOptions& options);

}  // namespace farmhand::media
