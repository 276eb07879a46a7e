#include "common/review_codecs.h"

#include <algorithm>
#include <charconv>

namespace farmhand::common {

const std::vector<ReviewCodec>& review_codecs() {
  static const std::vector<ReviewCodec> codecs = {
      {"h264", {"mp4", "mov"}, 51, 23, true}, {"h265", {"mp4", "mov"}, 51, 28, true},
      {"vp9", {"webm", "mp4"}, 63, 32, true}, {"av1", {"mp4", "webm"}, 63, 35, true},
      {"prores", {"mov"}, 0, 0, false},       {"dnxhr", {"mov"}, 0, 0, false},
  };
  return codecs;
}

Result<ReviewCodec> review_codec(const std::string& name) {
  std::string names;
  for (const ReviewCodec& codec : review_codecs()) {
    if (codec.name == name) return codec;
    names += (names.empty() ? "" : ", ") + codec.name;
  }
  return fail(ErrorCode::kInvalidArgument, "unknown codec '" + name + "' (" + names + ")");
}

Result<void> check_review_container(const ReviewCodec& codec, const std::string& extension,
                                    const std::string& output) {
  const std::string ext = ascii_lower(extension);
  if (std::find(codec.containers.begin(), codec.containers.end(), ext) != codec.containers.end()) {
    return {};
  }
  std::string use;
  for (size_t i = 0; i < codec.containers.size(); ++i) {
    use += (i == 0 ? "." : " or .") + codec.containers[i];
  }
  return fail(ErrorCode::kInvalidArgument,
              "codec " + codec.name + " cannot go into " + output + " (use " + use + ")");
}

Result<int> review_crf(const ReviewCodec& codec, const std::string& text) {
  if (text.empty()) return codec.crf_default;
  int crf = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), crf);
  if (codec.crf_max == 0) {
    return fail(ErrorCode::kInvalidArgument, "codec " + codec.name + " takes no crf");
  }
  if (ec != std::errc{} || end != text.data() + text.size() || crf < 0 || crf > codec.crf_max ||
      text.size() > 2) {
    return fail(ErrorCode::kInvalidArgument, "bad crf '" + text.substr(0, 20) + "' for " +
                                                 codec.name + " (0-" +
                                                 std::to_string(codec.crf_max) + ")");
  }
  return crf;
}

}  // namespace farmhand::common
