#include "daemon/media_jobs.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "media.pb.h"
#include <fmt/format.h>

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
  static const std::regex pattern("^[1-9][0-9]{0,4}(x[0-9]{1,5})?$");
  return std::regex_match(size, pattern);
}

bool valid_resize(const std::string& resize) {
  static const std::regex pattern("^([1-9][0-9]{0,4}(x[0-9]{1,5})?|[1-9][0-9]{0,2}%)$");
  return std::regex_match(resize, pattern);
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
    static const std::regex number("^-?[0-9]{1,18}$");
    if (!std::regex_match(which, number)) {
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
  return kind == "thumbnail" || kind == "convert" || kind == "transcode";
}

Result<void> prepare_media_job(wire::JobSpec& spec, const common::FrameSet* on_disk) {
  const std::string& kind = spec.kind();
  Result<void> known =
      kind == "thumbnail" ? check_known_params(spec, {"input", "output", "frame", "size", "ocio"})
      : kind == "convert"
          ? check_known_params(spec, {"input", "output", "resize", "format", "ocio"})
          : check_known_params(
                spec, {"input", "output", "codec", "fps", "crf", "missing", "ocio", "max_width"});
  if (!known) return known;
  std::string input_text = param(spec, "input");
  std::string output_text = param(spec, "output");
  if (auto ok = check_path("input", input_text); !ok) return ok;
  if (auto ok = check_path("output", output_text); !ok) return ok;
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

  if (kind == "convert") {
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
  std::string codec = param(spec, "codec", "h264");
  if (codec != "h264" && codec != "prores" && codec != "dnxhr") {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown codec '{}' (h264, prores, dnxhr)", codec));
  }
  std::string missing = param(spec, "missing", "hold");
  if (missing != "hold" && missing != "black" && missing != "fail") {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown missing-frame policy '{}' (hold, black, fail)", missing));
  }
  static const std::regex number("^[0-9]{1,6}(\\.[0-9]{1,6})?$");
  std::string fps = param(spec, "fps", "24");
  if (!std::regex_match(fps, number) || std::stod(fps) <= 0 || std::stod(fps) > 1000) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad --fps '{}'", fps));
  }
  std::string crf = param(spec, "crf", "23");
  static const std::regex crf_pattern("^[0-9]{1,2}$");
  if (!std::regex_match(crf, crf_pattern) || std::stoi(crf) > 51) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad --crf '{}' (0-51)", crf));
  }
  std::string max_width = param(spec, "max_width");
  static const std::regex width_pattern("^[1-9][0-9]{0,4}$");
  if (!max_width.empty() && !std::regex_match(max_width, width_pattern)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad max_width '{}'", max_width));
  }
  auto& params = *spec.mutable_params();
  params["codec"] = codec;
  params["missing"] = missing;
  params["fps"] = fps;
  params["crf"] = crf;
  // The movie covers first..last: frames missing in between follow the policy.
  int64_t first = frames->frame_at(0);
  int64_t last = frames->frame_at(frames->size() - 1);
  FrameSet movie = input->frames
                       ? *frames
                       : FrameSet::range(std::min(first, last),
                                         static_cast<uint64_t>(std::abs(last - first)) + 1);
  spec.set_frames(movie.to_string());
  spec.set_chunk(static_cast<uint32_t>(std::min<uint64_t>(movie.size(), UINT32_MAX)));
  return {};
}

Result<std::string> media_request(const wire::JobSpec& spec, const common::FrameSet& frames) {
  auto input = SequencePattern::parse(param(spec, "input"));
  if (!input) return fail(input.error());
  auto output = SequencePattern::parse(param(spec, "output"));
  if (!output) return fail(output.error());
  // The worker's media process formats frame paths itself: send the pattern
  // without any frame set written in it.
  input->frames.reset();
  media::Request request;
  if (spec.kind() == "thumbnail") {
    auto* t = request.mutable_thumbnail();
    int64_t frame = frames.empty() ? 1 : frames.frame_at(0);
    t->set_input(common::format_frame(*input, frame));
    t->set_output(common::format_frame(*output, frame));
    auto [w, h] = parse_size(param(spec, "size", "256"));
    t->set_width(w);
    t->set_height(h);
    t->set_ocio(param(spec, "ocio"));
  } else if (spec.kind() == "convert") {
    auto* c = request.mutable_convert();
    c->set_input_pattern(input->to_string());
    c->set_output_pattern(output->to_string());
    c->set_frames(frames.to_string());
    c->set_format(param(spec, "format"));
    c->set_resize(param(spec, "resize"));
    c->set_ocio(param(spec, "ocio"));
  } else if (spec.kind() == "transcode") {
    auto* t = request.mutable_transcode();
    t->set_input_pattern(input->to_string());
    t->set_frames(frames.to_string());
    t->set_output(param(spec, "output"));
    t->set_codec(param(spec, "codec", "h264"));
    t->set_fps(std::stod(param(spec, "fps", "24")));
    t->set_crf(std::stoi(param(spec, "crf", "23")));
    t->set_missing(param(spec, "missing", "hold"));
    t->set_ocio(param(spec, "ocio"));
    std::string max_width = param(spec, "max_width");
    if (!max_width.empty()) t->set_max_width(static_cast<uint32_t>(std::stoul(max_width)));
  } else {
    return fail(ErrorCode::kInvalidArgument, fmt::format("not a media kind: {}", spec.kind()));
  }
  return request.SerializeAsString();
}

std::chrono::seconds default_media_timeout(const wire::JobSpec& spec, uint64_t task_frames) {
  // Generous: a 4K EXR decodes in seconds, a hang never ends.
  if (spec.kind() == "thumbnail") return std::chrono::seconds(600);
  return std::chrono::seconds(600 + 30 * task_frames);
}

Result<void> check_allowed_root(const std::string& what, const std::string& path,
                                const std::vector<std::string>& roots) {
  if (roots.empty()) return {};
  namespace fs = std::filesystem;
  auto within = [](const fs::path& p, const fs::path& root) {
    auto at = p.begin();
    for (const auto& part : root) {
      if (part.empty()) continue;  // a trailing separator
      if (at == p.end() || *at != part) return false;
      ++at;
    }
    return true;
  };
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

Result<void> check_media_paths(const wire::JobSpec& spec, const std::vector<std::string>& roots) {
  for (const char* key : {"input", "output", "ocio"}) {
    const std::string value = param(spec, key);
    if (value.empty()) continue;
    if (auto ok = check_allowed_root(key, value, roots); !ok) return ok;
  }
  return {};
}

}  // namespace farmhand::daemon
