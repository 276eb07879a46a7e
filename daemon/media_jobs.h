// Media job kinds on the broker side: thumbnail, convert, transcode.
//
// At submit, prepare_media_job() validates a job's parameters, resolves its
// frames once (from the frame set written in the input pattern, else from the
// files on disk) and fixes its chunking, so the stored job never needs the
// file system again. At dispatch, media_request() builds the media::Request a
// worker forwards to its media process. No pixels are touched here: the broker
// neither links OpenImageIO nor opens an image.
//
// Parameters live in JobSpec.params:
//   thumbnail: input, output, frame (first|middle|last|N, default middle), size (WxH or W, 256)
//   convert:   input, output (a pattern with padding), resize (WxH, W or N%), format
//   transcode: input, output (.mov/.mp4/.webm), codec (h264|h265|vp9|av1|prores|dnxhr:
//              common/review_codecs.h), fps (24), crf (the codec's default), missing
//              (hold|black|fail), segments (N: encoded by N tasks and joined)
// A transcode's template values for its burn-ins and slate are params
// "meta.KEY" (from --meta, or a publish's meta through a rule).
// Pure functions, except that prepare_media_job reads one directory and
// check_media_paths reads the file system.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "farmhand.pb.h"

#include "common/frame_set.h"
#include "common/result.h"
#include "common/sequence.h"

namespace farmhand::daemon {

bool is_media_kind(const std::string& kind);

// A sequence's frames: the frame set written in the pattern, else the frames of the
// files on disk that the pattern names (a single file is frame 1). Reads one directory.
[[nodiscard]] Result<common::FrameSet> resolve_frames(const common::SequencePattern& input,
                                                      const std::string& text);

// Validates and completes `spec` (frames, chunk, defaults in params). Errors are
// one line: "no frames of /show/sh010/comp.####.exr on disk", "unknown codec 'x264'".
// Refuses an output the media process cannot write (its extension, a directory)
// and one that names, as written, a file the job reads (see check_media_paths).
// `on_disk`, when given, are the input's frames already read from disk (a publish
// resolved them): the directory is not listed again.
[[nodiscard]] Result<void> prepare_media_job(wire::JobSpec& spec,
                                             const common::FrameSet* on_disk = nullptr);

// Allowed roots (broker.allowed_roots): `path` must lie under one of `roots`
// (absolute, normalised), both as written (after removing "." and "..") and,
// as far as it exists on this host, with its symlinks resolved. No roots: any
// path. Error: "output /etc/x.jpg is outside the allowed roots (/mnt/projects)".
[[nodiscard]] Result<void> check_allowed_root(const std::string& what, const std::string& path,
                                              const std::vector<std::string>& roots);

// For a prepared media job, at submit: check_allowed_root for its input, output
// and OCIO config; then that no output is (after symlinks, or by device and
// inode when it exists) a file the job reads ("output /p/shot.1001.exr is the
// job's input frame 1001: a job never overwrites what it reads") and none is a
// directory. Then records in `spec` where the media process writes: the output
// directory resolved now and the allowed root holding it (params
// kOutputRootParam, kOutputDirParam; see media::Request). Reads the file
// system: a stat per directory and, when some output exists, one listing of
// each directory involved; never a stat per frame (100k-frame jobs).
[[nodiscard]] Result<void> check_media_paths(wire::JobSpec& spec,
                                             const std::vector<std::string>& roots);

// A transcode's template values: params "meta.shot" and so on.
inline constexpr const char* kMetaParam = "meta.";
// Params the broker sets at submit (a user cannot: prepare_media_job refuses them).
inline constexpr const char* kOutputRootParam = "_output_root";
inline constexpr const char* kOutputDirParam = "_output_dir";

// A movie in segments (--segments N, or one that follows a render frame by
// frame: workers/media/movie_join.h). prepare_media_job cuts it into tasks of
// whole GOPs and records the count in param "segments"; the intake then
// makes two jobs of it: one encodes the segments into a folder beside the
// output, the other, after it, joins them into the movie.
inline constexpr const char* kSegmentDirParam = "_segment_dir";
inline constexpr const char* kJoinParam = "_join";

// A prepared transcode in segments, not yet split.
bool wants_segments(const wire::JobSpec& spec);

// The job that joins a movie's segments.
bool is_movie_join(const wire::JobSpec& spec);

struct MovieJobs {
  wire::JobSpec segments;  // tasks of whole GOPs, each writing one segment
  wire::JobSpec join;      // one task; its `after` is the caller's to set
};

// The two jobs of a prepared movie in segments; `token` (random) names the
// segment folder, ".NAME.segments.TOKEN" in the output's directory.
MovieJobs split_movie_job(wire::JobSpec spec, uint64_t token);

// The serialized media::Request for one task covering `frames`.
[[nodiscard]] Result<std::string> media_request(const wire::JobSpec& spec,
                                                const common::FrameSet& frames);

// A hung decoder must not hold a slot forever: the limit a media task gets
// when its job sets no --timeout.
std::chrono::seconds default_media_timeout(const wire::JobSpec& spec, uint64_t task_frames);

}  // namespace farmhand::daemon
