#include "daemon/media_jobs.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>

#include "media.pb.h"
#include <dirent.h>
#include <fmt/format.h>
#include <re2/re2.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/media_kinds.h"
#include "common/review_codecs.h"
#include "common/sequence.h"

namespace farmhand::daemon {

namespace {

using common::FrameSet;
using common::SequencePattern;

std::string param(const wire::JobSpec& spec, const std::string& key,
                  const std::string& fallback = {}) {
  auto it = spec.params().find(key);
  return it == spec.params().end() || it->second.empty() ? fallback : it->second;
}

Result<void> check_known_params(const wire::JobSpec& spec,
                                std::initializer_list<const char*> known) {
  for (const auto& [key, value] : spec.params()) {
    // A transcode's template values (meta.shot...), for its burn-ins and slate.
    if ((spec.kind() == "transcode" || spec.kind() == "convert") && key.rfind(kMetaParam, 0) == 0) {
      continue;
    }
    if (std::none_of(known.begin(), known.end(), [&](const char* k) { return key == k; })) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("unknown parameter '{}' for {} jobs", key, spec.kind()));
    }
  }
  return {};
}

Result<void> check_path(const std::string& what, const std::string& path) {
  if (path.empty()) return fail(ErrorCode::kInvalidArgument, fmt::format("{} is required", what));
  if (path.front() != '/') {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("{} must be an absolute path: {}", what, path));
  }
  if (path.find('\0') != std::string::npos || path.size() > 4096) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad {} path", what));
  }
  return {};
}

bool valid_size(const std::string& size) {
  static const re2::RE2 pattern("[1-9][0-9]{0,4}(x[0-9]{1,5})?");
  return re2::RE2::FullMatch(size, pattern);
}

bool valid_resize(const std::string& resize) {
  static const re2::RE2 pattern("([1-9][0-9]{0,4}(x[0-9]{1,5})?|[1-9][0-9]{0,2}%)");
  return re2::RE2::FullMatch(resize, pattern);
}

// A movie in segments (workers/media/movie_join.h): --segments N cuts it
// into N tasks of as many frames each (at least a GOP); a movie that follows a render frame by
// frame (after_frames) is cut every kStreamingSegmentFrames unless --segments says otherwise, so
// each segment starts as soon as its frames are rendered. One segment: the movie is one task, as
// without.
constexpr uint64_t kStreamingSegmentFrames = common::kReviewGopFrames;
constexpr uint64_t kMaxSegments = 10000;

Result<void> plan_segments(wire::JobSpec& spec, uint64_t frames) {
  auto& params = *spec.mutable_params();
  const std::string written = param(spec, "segments");
  params.erase("segments");
  uint64_t length = 0;  // frames per segment
  if (!written.empty()) {
    static const re2::RE2 count("[1-9][0-9]{0,4}");
    uint64_t wanted = 0;
    if (!re2::RE2::FullMatch(written, count) || (wanted = std::stoull(written)) > kMaxSegments) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("bad --segments '{}' (1 to {})",
                                                           printable(written, 40), kMaxSegments));
    }
    // Balanced, and at least a GOP each: a segment opens on an IDR frame
    // wherever it starts, so any length holds whole GOPs.
    length = std::max<uint64_t>(common::kReviewGopFrames, (frames + wanted - 1) / wanted);
  } else if (spec.after_frames() != 0) {
    length = kStreamingSegmentFrames;
  }
  if (length == 0 || length >= frames) return {};
  if (spec.chunk_target_s() != 0) {
    return fail(ErrorCode::kInvalidArgument,
                "a movie in segments keeps them whole GOPs: no chunk target");
  }
  spec.set_chunk(static_cast<uint32_t>(length));
  params["segments"] = std::to_string((frames + length - 1) / length);
  return {};
}

Result<void> prepare_thumbnail(wire::JobSpec& spec, const SequencePattern& input,
                               const FrameSet& frames) {
  std::string which = param(spec, "frame", "middle");
  int64_t frame = 0;
  if (which == "first") {
    frame = frames.frame_at(0);
  } else if (which == "middle") {
    frame = frames.frame_at(frames.size() / 2);
  } else if (which == "last") {
    frame = frames.frame_at(frames.size() - 1);
  } else {
    static const re2::RE2 number("-?[0-9]{1,18}");
    if (!re2::RE2::FullMatch(which, number)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad --frame '{}' (first, middle, last or a number)", which));
    }
    frame = std::stoll(which);
    if (!input.is_single_file() && !frames.contains(frame)) {
      return fail(ErrorCode::kNotFound, fmt::format("missing frame {}", frame));
    }
  }
  std::string size = param(spec, "size", "256");
  if (!valid_size(size)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad --size '{}' (WxH or W)", size));
  }
  (*spec.mutable_params())["size"] = size;
  (*spec.mutable_params())["frame"] = which;
  spec.set_frames(std::to_string(frame));
  spec.set_chunk(1);
  return {};
}

std::pair<uint32_t, uint32_t> parse_size(const std::string& size) {
  auto x = size.find('x');
  uint32_t w = static_cast<uint32_t>(std::stoul(size.substr(0, x)));
  uint32_t h = x == std::string::npos ? 0 : static_cast<uint32_t>(std::stoul(size.substr(x + 1)));
  return {w, h};
}

// Whether every frame of `seq` has the same file name at `padding` as on disk, so a pattern of
// that padding names these files: "a.@.exr" finds a.1001.exr ... a.1100.exr (padding 4), but
// "a.####.exr" must not find a.998.exr ... a.1002.exr (padding 3), whose a.0998.exr is absent.
bool same_names_at(const common::Sequence& seq, int padding) {
  // The narrowest number is the one nearest zero (0 itself when the frames cross it).
  int64_t nearest = seq.first() > 0 ? seq.first() : seq.last() < 0 ? seq.last() : 0;
  return common::format_frame_number(nearest, padding) ==
         common::format_frame_number(nearest, seq.pattern.padding);
}

std::string lower_ext(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return ext.empty() ? ext : ext.substr(1);
}

// What farmhand-media writes (workers/media/image_ops.cpp, format_from_name).
bool writable_image_ext(const std::string& ext) {
  static const char* kExts[] = {"jpg", "jpeg", "png", "tif", "tiff", "dpx", "exr"};
  return std::any_of(std::begin(kExts), std::end(kExts), [&](auto e) { return ext == e; });
}

// Output paths that name a directory ("/p/out/", "/p/out/.") never get a file.
Result<void> check_output_name(const std::string& output) {
  std::string name = std::filesystem::path(output).filename().string();
  if (name.empty() || name == "." || name == "..") {
    return fail(ErrorCode::kInvalidArgument, fmt::format("output {} is a directory", output));
  }
  return {};
}

// The files a media job reads in one directory: file name -> what it is to the
// job ("input frame 1001", "input", "OCIO config").
struct ReadDir {
  std::string dir;
  std::unordered_map<std::string, std::string> names;
};

struct JobFiles {
  std::string output_dir;
  std::vector<std::string> outputs;  // full paths; one per frame for convert
  std::vector<ReadDir> reads;
};

std::string dir_of(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

std::string name_of(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Every output of a prepared media job and every file it reads. Pure.
Result<JobFiles> job_files(const wire::JobSpec& spec) {
  auto input = SequencePattern::parse(param(spec, "input"));
  if (!input) return fail(input.error());
  auto output = SequencePattern::parse(param(spec, "output"));
  if (!output) return fail(output.error());
  std::optional<FrameSet> written = input->frames;
  input->frames.reset();
  FrameSet frames;
  if (!spec.frames().empty()) {
    auto parsed = FrameSet::parse(spec.frames());
    if (!parsed) return fail(parsed.error());
    frames = std::move(*parsed);
  } else if (written) {
    frames = *written;
  } else {
    frames = FrameSet::range(1, 1);
  }
  JobFiles files;
  ReadDir in;
  in.dir = dir_of(common::format_frame(*input, 1));
  for (uint64_t i = 0; i < frames.size(); ++i) {
    int64_t frame = frames.frame_at(i);
    in.names.emplace(name_of(common::format_frame(*input, frame)),
                     input->is_single_file() ? "input" : fmt::format("input frame {}", frame));
  }
  files.reads.push_back(std::move(in));
  if (std::string ocio = param(spec, "ocio"); !ocio.empty()) {
    files.reads.push_back({dir_of(ocio), {{name_of(ocio), "OCIO config"}}});
  }
  if (std::string audio = param(spec, "audio"); !audio.empty()) {
    files.reads.push_back({dir_of(audio), {{name_of(audio), "sound"}}});
  }
  if (std::string font = param(spec, "font"); !font.empty()) {
    files.reads.push_back({dir_of(font), {{name_of(font), "font"}}});
  }
  if (spec.kind() == "convert") {
    files.outputs.reserve(frames.size());
    for (uint64_t i = 0; i < frames.size(); ++i) {
      files.outputs.push_back(common::format_frame(*output, frames.frame_at(i)));
    }
  } else if (spec.kind() == "thumbnail") {
    files.outputs.push_back(common::format_frame(*output, frames.empty() ? 1 : frames.frame_at(0)));
  } else {
    files.outputs.push_back(param(spec, "output"));
  }
  files.output_dir = dir_of(files.outputs.front());
  return files;
}

tl::unexpected<Error> overwrites(const std::string& output, const std::string& what) {
  return fail(ErrorCode::kInvalidArgument,
              fmt::format("output {} is the job's {}: a job never overwrites what it reads",
                          printable(output, 300), what));
}

// The first output whose file name is one the job reads in `read`, the two
// directories being one.
Result<void> check_names(const JobFiles& files, const ReadDir& read) {
  for (const std::string& output : files.outputs) {
    auto it = read.names.find(name_of(output));
    if (it != read.names.end()) return overwrites(output, it->second);
  }
  return {};
}

// A directory as written, after removing "." and "..", without a trailing "/".
std::string normal_dir(const std::string& dir) {
  std::string normal = std::filesystem::path(dir).lexically_normal().string();
  if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

// Paths as written: what --check-config can see.
Result<void> check_output_not_input_as_written(const wire::JobSpec& spec) {
  auto files = job_files(spec);
  if (!files) return fail(files.error());
  const std::string out_dir = normal_dir(files->output_dir);
  for (const ReadDir& read : files->reads) {
    if (normal_dir(read.dir) != out_dir) continue;
    if (auto ok = check_names(*files, read); !ok) return ok;
  }
  return {};
}

struct FileKey {
  dev_t dev;
  ino_t ino;

  bool operator<(const FileKey& o) const { return std::tie(dev, ino) < std::tie(o.dev, o.ino); }
};

}  // namespace

Result<FrameSet> resolve_frames(const SequencePattern& input, const std::string& text) {
  if (input.frames) return *input.frames;
  if (input.is_single_file()) return FrameSet::range(1, 1);
  std::string dir = input.dir.empty() ? "." : input.dir;
  auto sequences = common::scan_directory(dir);
  if (!sequences) return fail(sequences.error());
  // First the same padding; then another padding that writes the same file names
  // (a 4-padded pattern finds 1001-1100 written without zeros).
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& seq : *sequences) {
      if (seq.is_single_file() || seq.pattern.prefix != input.prefix ||
          seq.pattern.suffix != input.suffix) {
        continue;
      }
      if (pass == 0 && seq.pattern.padding != input.padding) continue;
      if (pass == 1 && !same_names_at(seq, input.padding)) continue;
      return seq.frames;
    }
  }
  return fail(ErrorCode::kNotFound, fmt::format("no frames of {} on disk", text));
}

bool is_media_kind(const std::string& kind) {
  return common::is_media_kind(kind);
}

namespace {

// Burn-ins (one per line, [POSITION=]TEXT), their size, colour and font, the
// slate and their values (meta.KEY): every name a burn-in reads is the
// movie's own or given (--meta). For transcodes and proxies.
Result<void> check_burn_ins(const wire::JobSpec& spec) {
  auto burns = common::parse_burn_ins(param(spec, "burn_in"));
  if (!burns) return fail(burns.error());
  for (const auto& burn : *burns) {
    for (const std::string& name : common::burn_in_names(burn.text)) {
      if (!common::is_builtin_review_name(name) &&
          spec.params().count(std::string(kMetaParam) + name) == 0) {
        return fail(
            ErrorCode::kInvalidArgument,
            fmt::format("burn-in '{}': no value for {{{}}} (give it with --meta {}=..., "
                        "or use frame, timecode, first, last, fps, date)",
                        printable(burn.text, 100), printable(name, 40), printable(name, 40)));
      }
    }
  }
  if (std::string size = param(spec, "burn_in_size"); !size.empty()) {
    static const re2::RE2 size_pattern("[1-9][0-9]{0,2}");
    if (!re2::RE2::FullMatch(size, size_pattern) || std::stoi(size) < 6) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad --burn-in-size '{}' (6-999 pixels)", printable(size, 20)));
    }
  }
  if (std::string colour = param(spec, "burn_in_colour"); !colour.empty()) {
    if (auto ok = common::burn_in_rgb(colour); !ok) return fail(ok.error());
  }
  const std::string slate = param(spec, "slate", "false");
  if (slate != "true" && slate != "false") {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("slate must be true or false, not '{}'", printable(slate, 40)));
  }
  if (std::string font = param(spec, "font"); !font.empty()) {
    if (auto ok = check_path("font", font); !ok) return ok;
  }
  size_t values = 0;
  for (const auto& [key, value] : spec.params()) {
    if (key.rfind(kMetaParam, 0) != 0) continue;
    const std::string name = key.substr(std::string(kMetaParam).size());
    if (name.empty() || name.size() > 64 || ++values > 64 || value.size() > 500 ||
        value.find_first_of("\n\r") != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad --meta '{}={}' (up to 64 keys, one line of 500 bytes each)",
                              printable(name, 64), printable(value, 60)));
    }
  }
  return {};
}

Result<void> prepare_params(wire::JobSpec& spec, const common::FrameSet* on_disk) {
  const std::string& kind = spec.kind();
  // Every media kind takes the OCIO choice (ocio, display, view, look).
  Result<void> known =
      kind == "thumbnail" ? check_known_params(spec, {"input", "output", "frame", "size", "ocio",
                                                      "display", "view", "look"})
      : kind == "convert" ? check_known_params(spec, {"input", "output", "resize", "format", "ocio",
                                                      "display", "view", "look", "burn_in",
                                                      "burn_in_size", "burn_in_colour", "font"})
      : kind == "contactsheet"
          ? check_known_params(spec, {"input", "output", "every", "columns", "size", "title",
                                      "ocio", "display", "view", "look"})
          : check_known_params(
                spec, {"input", "output", "codec", "fps", "crf", "missing", "ocio", "max_width",
                       "audio", "audio_offset", "burn_in", "burn_in_size", "burn_in_colour",
                       "slate", "font", "display", "view", "look", "segments"});
  for (const char* key : {"display", "view", "look"}) {
    const std::string value = param(spec, key);
    if (value.size() > 200 || value.find_first_of("\n\r") != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad --{} '{}' (an OCIO name, one line)", key, printable(value, 60)));
    }
  }
  if (!known) return known;
  std::string input_text = param(spec, "input");
  std::string output_text = param(spec, "output");
  if (auto ok = check_path("input", input_text); !ok) return ok;
  if (auto ok = check_path("output", output_text); !ok) return ok;
  if (auto ok = check_output_name(output_text); !ok) return ok;
  const std::string ext = lower_ext(output_text);
  if ((kind == "thumbnail" || kind == "contactsheet" ||
       (kind == "convert" && param(spec, "format").empty())) &&
      !writable_image_ext(ext)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("output {}: cannot write .{} images (jpg, png, tif, dpx, exr)",
                            printable(output_text, 300), printable(ext, 16)));
  }
  auto input = SequencePattern::parse(input_text);
  if (!input) return fail(input.error());
  auto output = SequencePattern::parse(output_text);
  if (!output) return fail(output.error());
  if (output->frames) {
    return fail(ErrorCode::kInvalidArgument, "output pattern must not name frames");
  }
  if (!spec.frames().empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "media jobs take their frames from the input, e.g. shot.1001-1100#.exr");
  }
  auto frames = on_disk != nullptr && !input->frames && !input->is_single_file()
                    ? Result<FrameSet>(*on_disk)
                    : resolve_frames(*input, input_text);
  if (!frames) return fail(frames.error());

  if (kind == "thumbnail") return prepare_thumbnail(spec, *input, *frames);

  if (kind == "contactsheet") {
    if (ext == "exr" || ext == "dpx") {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("a contact sheet is a display image: {} (jpg, png, tif)",
                              printable(output_text, 300)));
    }
    // Whole numbers in range, else one line naming the option.
    auto whole = [&](const char* key, const char* flag, uint64_t low, uint64_t high,
                     uint64_t fallback) -> Result<uint64_t> {
      const std::string text = param(spec, key);
      if (text.empty()) return fallback;
      uint64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("bad {} '{}' ({}-{})", flag, printable(text, 40), low, high));
      }
      return value;
    };
    auto every = whole("every", "--every", 1, 1'000'000, 0);
    if (!every) return fail(every.error());
    auto columns = whole("columns", "--columns", 1, 100, 0);
    if (!columns) return fail(columns.error());
    auto size = whole("size", "--size", 16, 4096, 320);
    if (!size) return fail(size.error());
    constexpr uint64_t kMaxCells = 1000;
    // Every Nth frame of the sequence; by default as many as make about 24 cells.
    const uint64_t step = *every != 0 ? *every : std::max<uint64_t>(1, (frames->size() + 23) / 24);
    std::vector<int64_t> picked;
    for (uint64_t i = 0; i < frames->size(); i += step) picked.push_back(frames->frame_at(i));
    if (picked.size() > kMaxCells) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} frames on one contact sheet (at most {}): use a larger --every",
                              picked.size(), kMaxCells));
    }
    const uint64_t cols =
        *columns != 0
            ? *columns
            : std::min<uint64_t>(picked.size(),
                                 static_cast<uint64_t>(std::ceil(std::sqrt(picked.size() * 1.5))));
    std::string list;
    for (int64_t frame : picked) list += (list.empty() ? "" : ",") + std::to_string(frame);
    auto sheet_frames = FrameSet::parse(list);
    if (!sheet_frames) return fail(sheet_frames.error());
    auto& params = *spec.mutable_params();
    params["every"] = std::to_string(step);
    params["columns"] = std::to_string(cols);
    params["size"] = std::to_string(*size);
    if (params.count("title") == 0) {
      params["title"] = std::filesystem::path(input->to_string()).filename().string();
    }
    spec.set_frames(sheet_frames->to_string());
    spec.set_chunk(static_cast<uint32_t>(picked.size()));  // one task: one sheet
    return {};
  }

  if (kind == "convert") {
    if (auto ok = check_burn_ins(spec); !ok) return ok;
    if (!input->is_single_file() && output->is_single_file() && frames->size() > 1) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("output {} needs frame padding (e.g. proxy.####.jpg)", output_text));
    }
    std::string resize = param(spec, "resize");
    if (!resize.empty() && !valid_resize(resize)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("bad --resize '{}' (WxH, W or N%)", resize));
    }
    std::string format = param(spec, "format");
    static const char* kFormats[] = {"jpg", "png", "tif", "dpx", "exr"};
    if (!format.empty() && std::none_of(std::begin(kFormats), std::end(kFormats),
                                        [&](auto f) { return format == f; })) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("unknown format '{}' (jpg, png, tif, dpx, exr)", format));
    }
    spec.set_frames(frames->to_string());
    if (spec.chunk() == 0) spec.set_chunk(10);
    return {};
  }

  // transcode
  if (input->is_single_file()) {
    return fail(ErrorCode::kInvalidArgument, "transcode needs an image sequence as input");
  }
  std::string codec_name = param(spec, "codec", "h264");
  auto codec = common::review_codec(codec_name);
  if (!codec) return fail(codec.error());
  // What farmhand-media's muxer takes (workers/media/transcode.cpp, validate).
  if (ext != "mov" && ext != "mp4" && ext != "webm") {
    return fail(
        ErrorCode::kInvalidArgument,
        fmt::format("output {} must end in .mov, .mp4 or .webm", printable(output_text, 300)));
  }
  if (auto fits = common::check_review_container(*codec, ext, printable(output_text, 300)); !fits) {
    return fail(fits.error());
  }
  std::string missing = param(spec, "missing", "hold");
  if (missing != "hold" && missing != "black" && missing != "fail") {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown missing-frame policy '{}' (hold, black, fail)", missing));
  }
  static const re2::RE2 number("[0-9]{1,6}(\\.[0-9]{1,6})?");
  std::string fps = param(spec, "fps", "24");
  if (!re2::RE2::FullMatch(fps, number) || std::stod(fps) <= 0 || std::stod(fps) > 1000) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad --fps '{}'", fps));
  }
  // A codec without a crf (ProRes, DNxHR) ignores one given (a rule's
  // defaults may carry one for every codec); a bad one is refused.
  auto crf = common::review_crf(*codec, codec->crf_max == 0 ? "" : param(spec, "crf"));
  if (!crf) return fail(crf.error());
  std::string max_width = param(spec, "max_width");
  static const re2::RE2 width_pattern("[1-9][0-9]{0,4}");
  if (!max_width.empty() && !re2::RE2::FullMatch(max_width, width_pattern)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad max_width '{}'", max_width));
  }
  // The sound: a file (WAV, AIFF, FLAC...) read by the media process; its
  // offset in frames of the movie, negative to cut its start.
  const std::string audio = param(spec, "audio");
  if (!audio.empty()) {
    if (auto ok = check_path("audio", audio); !ok) return ok;
  }
  std::string audio_offset = param(spec, "audio_offset");
  static const re2::RE2 offset_pattern("-?[0-9]{1,7}");
  if (!audio_offset.empty() && !re2::RE2::FullMatch(audio_offset, offset_pattern)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("bad --audio-offset '{}' (whole frames, negative to cut the start)",
                            printable(audio_offset, 40)));
  }
  if (!audio_offset.empty() && audio.empty()) {
    return fail(ErrorCode::kInvalidArgument, "--audio-offset without --audio");
  }
  if (auto ok = check_burn_ins(spec); !ok) return ok;
  auto& params = *spec.mutable_params();
  params["codec"] = codec_name;
  params["missing"] = missing;
  params["fps"] = fps;
  if (codec->crf_max != 0) {
    params["crf"] = std::to_string(*crf);
  } else {
    params.erase("crf");
  }
  // The movie covers first..last: frames missing in between follow the policy.
  int64_t first = frames->frame_at(0);
  int64_t last = frames->frame_at(frames->size() - 1);
  FrameSet movie = input->frames
                       ? *frames
                       : FrameSet::range(std::min(first, last),
                                         static_cast<uint64_t>(std::abs(last - first)) + 1);
  spec.set_frames(movie.to_string());
  spec.set_chunk(static_cast<uint32_t>(std::min<uint64_t>(movie.size(), UINT32_MAX)));
  return plan_segments(spec, movie.size());
}

}  // namespace

Result<void> prepare_media_job(wire::JobSpec& spec, const common::FrameSet* on_disk) {
  if (auto ok = prepare_params(spec, on_disk); !ok) return ok;
  return check_output_not_input_as_written(spec);
}

namespace {

// A transcode's or proxy's burn-ins, their look and values, into its request.
template <typename Body>
Result<void> set_burn_ins(const wire::JobSpec& spec, Body& body) {
  auto burns = common::parse_burn_ins(param(spec, "burn_in"));
  if (!burns) return fail(burns.error());
  for (const auto& burn : *burns) body.add_burn_in(burn.position + "=" + burn.text);
  if (std::string size = param(spec, "burn_in_size"); !size.empty()) {
    body.set_text_size(static_cast<uint32_t>(std::stoul(size)));
  }
  body.set_text_colour(param(spec, "burn_in_colour"));
  body.set_font(param(spec, "font"));
  for (const auto& [key, value] : spec.params()) {
    if (key.rfind(kMetaParam, 0) == 0) {
      (*body.mutable_values())[key.substr(std::string(kMetaParam).size())] = value;
    }
  }
  return {};
}

}  // namespace

Result<std::string> media_request(const wire::JobSpec& spec, const common::FrameSet& frames) {
  auto input = SequencePattern::parse(param(spec, "input"));
  if (!input) return fail(input.error());
  auto output = SequencePattern::parse(param(spec, "output"));
  if (!output) return fail(output.error());
  // The worker's media process formats frame paths itself: send the pattern
  // without any frame set written in it.
  input->frames.reset();
  media::Request request;
  request.set_output_root(param(spec, kOutputRootParam));
  request.set_output_dir(param(spec, kOutputDirParam));
  if (spec.kind() == "thumbnail") {
    auto* t = request.mutable_thumbnail();
    int64_t frame = frames.empty() ? 1 : frames.frame_at(0);
    t->set_input(common::format_frame(*input, frame));
    t->set_output(common::format_frame(*output, frame));
    auto [w, h] = parse_size(param(spec, "size", "256"));
    t->set_width(w);
    t->set_height(h);
    t->set_ocio(param(spec, "ocio"));
    t->set_display(param(spec, "display"));
    t->set_view(param(spec, "view"));
    t->set_look(param(spec, "look"));
  } else if (spec.kind() == "convert") {
    auto* c = request.mutable_convert();
    c->set_input_pattern(input->to_string());
    c->set_output_pattern(output->to_string());
    c->set_frames(frames.to_string());
    c->set_format(param(spec, "format"));
    c->set_resize(param(spec, "resize"));
    c->set_ocio(param(spec, "ocio"));
    c->set_display(param(spec, "display"));
    c->set_view(param(spec, "view"));
    c->set_look(param(spec, "look"));
    if (auto ok = set_burn_ins(spec, *c); !ok) return fail(ok.error());
    // {first} and {last} are the sequence's, whichever chunk this task is.
    if (auto all = FrameSet::parse(spec.frames()); all && !all->empty()) {
      c->set_sequence_first(all->frame_at(0));
      c->set_sequence_last(all->frame_at(all->size() - 1));
    }
  } else if (spec.kind() == "contactsheet") {
    auto* c = request.mutable_contact_sheet();
    c->set_input_pattern(input->to_string());
    c->set_frames(frames.to_string());
    c->set_output(param(spec, "output"));
    c->set_columns(static_cast<uint32_t>(std::stoul(param(spec, "columns", "5"))));
    c->set_cell_width(static_cast<uint32_t>(std::stoul(param(spec, "size", "320"))));
    c->set_title(param(spec, "title"));
    c->set_ocio(param(spec, "ocio"));
    c->set_display(param(spec, "display"));
    c->set_view(param(spec, "view"));
    c->set_look(param(spec, "look"));
  } else if (is_movie_join(spec)) {
    auto* j = request.mutable_join();
    j->set_segment_dir(param(spec, kSegmentDirParam));
    j->set_frames(spec.frames());
    j->set_output(param(spec, "output"));
    j->set_codec(param(spec, "codec", "h264"));
    j->set_fps(std::stod(param(spec, "fps", "24")));
    j->set_slate(param(spec, "slate") == "true");
    j->set_audio(param(spec, "audio"));
    if (std::string offset = param(spec, "audio_offset"); !offset.empty()) {
      j->set_audio_offset(std::stoll(offset));
    }
  } else if (spec.kind() == "transcode") {
    auto* t = request.mutable_transcode();
    t->set_input_pattern(input->to_string());
    t->set_frames(frames.to_string());
    t->set_output(param(spec, "output"));
    t->set_codec(param(spec, "codec", "h264"));
    t->set_fps(std::stod(param(spec, "fps", "24")));
    if (std::string crf = param(spec, "crf"); !crf.empty()) t->set_crf(std::stoi(crf));
    t->set_missing(param(spec, "missing", "hold"));
    t->set_ocio(param(spec, "ocio"));
    t->set_display(param(spec, "display"));
    t->set_view(param(spec, "view"));
    t->set_look(param(spec, "look"));
    std::string max_width = param(spec, "max_width");
    if (!max_width.empty()) t->set_max_width(static_cast<uint32_t>(std::stoul(max_width)));
    t->set_audio(param(spec, "audio"));
    if (auto ok = set_burn_ins(spec, *t); !ok) return fail(ok.error());
    t->set_slate(param(spec, "slate") == "true");
    if (std::string offset = param(spec, "audio_offset"); !offset.empty()) {
      t->set_audio_offset(std::stoll(offset));
    }
    if (std::string dir = param(spec, kSegmentDirParam); !dir.empty() && !frames.empty()) {
      // One segment, into the job's segment folder; the join makes the movie.
      t->set_movie_frames(spec.frames());
      t->set_output(dir + "/" +
                    common::movie_segment_name(
                        frames.frame_at(0), frames.frame_at(frames.size() - 1),
                        std::filesystem::path(param(spec, "output")).extension().string()));
      request.set_output_dir(dir);
    }
  } else {
    return fail(ErrorCode::kInvalidArgument, fmt::format("not a media kind: {}", spec.kind()));
  }
  return request.SerializeAsString();
}

bool wants_segments(const wire::JobSpec& spec) {
  return spec.kind() == "transcode" && !param(spec, "segments").empty() &&
         param(spec, kSegmentDirParam).empty();
}

bool is_movie_join(const wire::JobSpec& spec) {
  return spec.kind() == "transcode" && param(spec, kJoinParam) == "1";
}

MovieJobs split_movie_job(wire::JobSpec spec, uint64_t token) {
  namespace fs = std::filesystem;
  const fs::path output(param(spec, "output"));
  std::string dir = param(spec, kOutputDirParam);
  if (dir.empty()) dir = output.parent_path().string();
  const std::string folder =
      (fs::path(dir) / fmt::format(".{}.segments.{:016x}", output.filename().string(), token))
          .string();
  (*spec.mutable_params())[kSegmentDirParam] = folder;
  MovieJobs jobs;
  jobs.join = spec;
  jobs.segments = std::move(spec);
  // The segments job is the join's to answer for: no key, no events of its own.
  jobs.segments.clear_idempotency_key();
  if (!jobs.segments.name().empty()) jobs.segments.set_name(jobs.segments.name() + " [segments]");
  (*jobs.join.mutable_params())[kJoinParam] = "1";
  jobs.join.clear_after();
  jobs.join.clear_after_frames();
  jobs.join.set_chunk(static_cast<uint32_t>(
      std::min<uint64_t>(FrameSet::parse(jobs.join.frames())->size(), UINT32_MAX)));
  return jobs;
}

std::chrono::seconds default_media_timeout(const wire::JobSpec& spec, uint64_t task_frames) {
  // Generous: a 4K EXR decodes in seconds, a hang never ends.
  if (spec.kind() == "thumbnail") return std::chrono::seconds(600);
  return std::chrono::seconds(600 + 30 * task_frames);
}

namespace {

// `p` lies under `root`, component by component (both normalised).
bool within(const std::filesystem::path& p, const std::filesystem::path& root) {
  auto at = p.begin();
  for (const auto& part : root) {
    if (part.empty()) continue;  // a trailing separator
    if (at == p.end() || *at != part) return false;
    ++at;
  }
  return true;
}

}  // namespace

Result<void> check_allowed_root(const std::string& what, const std::string& path,
                                const std::vector<std::string>& roots) {
  if (roots.empty()) return {};
  namespace fs = std::filesystem;
  const fs::path written = fs::path(path).lexically_normal();
  bool ok = std::any_of(roots.begin(), roots.end(),
                        [&](const std::string& root) { return within(written, root); });
  if (ok) {
    // Symlinks: what the existing part of the path resolves to must also be
    // under a root (or under what a root resolves to).
    std::error_code ec;
    const fs::path real = fs::weakly_canonical(written, ec);
    if (!ec) {
      ok = std::any_of(roots.begin(), roots.end(), [&](const std::string& root) {
        std::error_code root_ec;
        const fs::path real_root = fs::weakly_canonical(root, root_ec);
        return within(real, root) || (!root_ec && within(real, real_root));
      });
    }
  }
  if (ok) return {};
  std::string list;
  for (const std::string& root : roots) list += (list.empty() ? "" : ", ") + root;
  return fail(ErrorCode::kInvalidArgument,
              fmt::format("{} {} is outside the allowed roots ({})", what, printable(path, 300),
                          printable(list, 300)));
}

namespace {

std::optional<FileKey> key_of(const std::string& path) {
  struct stat st {};

  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileKey{st.st_dev, st.st_ino};
}

// Calls `each(name, inode, type)` for every entry of `dir`; false if it cannot be read.
template <typename F>
bool list_dir(const std::string& dir, F&& each) {
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) return false;
  while (const dirent* entry = ::readdir(listing)) each(entry->d_name, entry->d_ino, entry->d_type);
  ::closedir(listing);
  return true;
}

// The existing outputs of `files` by identity, from one listing of the output
// directory (inode numbers as readdir gives them; a symlink is followed).
std::map<FileKey, std::string> existing_outputs(const JobFiles& files, dev_t dev) {
  std::unordered_map<std::string, const std::string*> wanted;
  for (const std::string& output : files.outputs) wanted.emplace(name_of(output), &output);
  std::map<FileKey, std::string> existing;
  list_dir(files.output_dir, [&](const char* name, ino_t ino, unsigned char type) {
    auto it = wanted.find(name);
    if (it == wanted.end()) return;
    if (type == DT_LNK || type == DT_UNKNOWN) {
      if (auto key = key_of(*it->second)) existing.emplace(*key, *it->second);
    } else {
      existing.emplace(FileKey{dev, ino}, *it->second);
    }
  });
  return existing;
}

// Output == input by identity: the same directory (after symlinks) and file
// name, or an existing output that is a link to a file the job reads. Reads
// the file system: a stat per directory and, when some output exists, one
// listing of each directory involved.
Result<void> check_output_not_input(const wire::JobSpec& spec) {
  auto files = job_files(spec);
  if (!files) return fail(files.error());

  struct stat st {};

  if (::stat(files->outputs.front().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("output {} is a directory", printable(files->outputs.front(), 300)));
  }
  auto out_dir = key_of(files->output_dir);
  if (!out_dir) return {};  // a new directory holds nothing the job reads
  for (const ReadDir& read : files->reads) {
    auto dir = key_of(read.dir);
    if (!dir || dir->dev != out_dir->dev || dir->ino != out_dir->ino) continue;
    if (auto ok = check_names(*files, read); !ok) return ok;
  }
  // Hard links and symlinks: an existing output that is a file the job reads
  // under another name. Inode numbers from one listing per directory, never a
  // stat per frame; a match is confirmed with stat.
  auto existing = existing_outputs(*files, out_dir->dev);
  if (existing.empty()) return {};
  for (const ReadDir& read : files->reads) {
    auto dir = key_of(read.dir);
    if (!dir) continue;
    std::optional<Result<void>> found;
    list_dir(read.dir, [&](const char* name, ino_t ino, unsigned char) {
      if (found) return;
      auto it = read.names.find(name);
      if (it == read.names.end()) return;
      auto out = existing.find(FileKey{dir->dev, ino});
      if (out == existing.end()) return;
      auto input_key = key_of(read.dir + "/" + name);
      auto output_key = key_of(out->second);
      if (input_key && output_key && input_key->dev == output_key->dev &&
          input_key->ino == output_key->ino) {
        found = overwrites(out->second, it->second);
      }
    });
    if (found) return *found;
  }
  return {};
}

// Where the media process puts the output: its directory with symlinks
// resolved now, beneath the allowed root that holds it (or "/").
void record_output_place(wire::JobSpec& spec, const std::vector<std::string>& roots) {
  namespace fs = std::filesystem;
  auto files = job_files(spec);
  if (!files) return;
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(fs::absolute(files->output_dir), ec);
  if (ec) return;
  std::string root = "/";
  for (const std::string& candidate : roots) {
    fs::path real = fs::weakly_canonical(candidate, ec);
    if (!ec && within(dir, real)) {
      root = real.string();
      break;
    }
  }
  (*spec.mutable_params())[kOutputRootParam] = root;
  (*spec.mutable_params())[kOutputDirParam] = dir.string();
}

}  // namespace

Result<void> check_media_paths(wire::JobSpec& spec, const std::vector<std::string>& roots) {
  spec.mutable_params()->erase(kOutputRootParam);
  spec.mutable_params()->erase(kOutputDirParam);
  for (const char* key : {"input", "output", "ocio", "audio", "font"}) {
    const std::string value = param(spec, key);
    if (value.empty()) continue;
    if (auto ok = check_allowed_root(key, value, roots); !ok) return ok;
  }
  if (auto ok = check_output_not_input(spec); !ok) return ok;
  record_output_place(spec, roots);
  return {};
}

}  // namespace farmhand::daemon
