#include "common/review_codecs.h"

#include <algorithm>
#include <cctype>
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

Result<BurnInSpec> parse_burn_in(const std::string& written, size_t index) {
  static const char* const kPositions[] = {"bottom-left", "bottom-right", "top-left",
                                           "top-right",   "bottom",       "top"};
  BurnInSpec spec;
  if (const size_t eq = written.find('='); eq != std::string::npos) {
    const std::string head = written.substr(0, eq);
    for (const char* position : kPositions) {
      if (head == position) {
        spec.position = head;
        spec.text = written.substr(eq + 1);
      }
    }
  }
  if (spec.position.empty()) {
    spec.position = kPositions[index % std::size(kPositions)];
    spec.text = written;
  }
  if (spec.text.empty()) {
    return fail(ErrorCode::kInvalidArgument, "burn-in '" + written + "' has no text");
  }
  if (spec.text.size() > 500 || spec.text.find_first_of("\n\r") != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "burn-in '" + spec.text.substr(0, 60) + "' is not one line of at most 500 bytes");
  }
  // Braces pair up ({{ and }} are braces).
  for (size_t i = 0; i < spec.text.size(); ++i) {
    const char c = spec.text[i];
    if ((c == '{' || c == '}') && i + 1 < spec.text.size() && spec.text[i + 1] == c) {
      ++i;
    } else if (c == '}') {
      return fail(ErrorCode::kInvalidArgument,
                  "burn-in '" + spec.text + "': a '}' without its '{'");
    } else if (c == '{') {
      const size_t end = spec.text.find_first_of("{}", i + 1);
      if (end == std::string::npos || spec.text[end] != '}') {
        return fail(ErrorCode::kInvalidArgument,
                    "burn-in '" + spec.text + "': a '{' without its '}'");
      }
      i = end;
    }
  }
  return spec;
}

std::vector<std::string> burn_in_names(const std::string& text) {
  std::vector<std::string> names;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      ++i;
    } else if (c == '{') {
      const size_t end = text.find('}', i);
      if (end == std::string::npos) break;
      names.push_back(text.substr(i + 1, end - i - 1));
      i = end;
    }
  }
  return names;
}

bool is_builtin_review_name(const std::string& name) {
  for (const char* builtin : {"frame", "timecode", "first", "last", "fps", "date"}) {
    if (name == builtin) return true;
  }
  return false;
}

Result<std::array<int, 3>> burn_in_rgb(const std::string& colour) {
  static const std::pair<const char*, std::array<int, 3>> kNames[] = {
      {"white", {255, 255, 255}}, {"black", {0, 0, 0}},      {"grey", {128, 128, 128}},
      {"gray", {128, 128, 128}},  {"red", {255, 0, 0}},      {"green", {0, 255, 0}},
      {"blue", {0, 0, 255}},      {"yellow", {255, 255, 0}}, {"cyan", {0, 255, 255}},
      {"magenta", {255, 0, 255}}, {"orange", {255, 165, 0}}};
  for (const auto& [name, rgb] : kNames) {
    if (colour == name) return rgb;
  }
  if (colour.size() == 7 && colour[0] == '#' &&
      std::all_of(colour.begin() + 1, colour.end(),
                  [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    std::array<int, 3> rgb{};
    for (size_t c = 0; c < 3; ++c) rgb[c] = std::stoi(colour.substr(1 + 2 * c, 2), nullptr, 16);
    return rgb;
  }
  return fail(ErrorCode::kInvalidArgument,
              "bad burn-in colour '" + colour.substr(0, 40) +
                  "' (#RRGGBB or white, black, grey, red, green, blue, yellow, cyan, magenta, "
                  "orange)");
}

Result<std::vector<BurnInSpec>> parse_burn_ins(const std::string& lines) {
  std::vector<BurnInSpec> out;
  size_t start = 0;
  while (start < lines.size()) {
    size_t end = lines.find('\n', start);
    if (end == std::string::npos) end = lines.size();
    if (end > start) {
      auto spec = parse_burn_in(lines.substr(start, end - start), out.size());
      if (!spec) return fail(spec.error());
      out.push_back(std::move(*spec));
    }
    start = end + 1;
  }
  return out;
}

}  // namespace farmhand::common
