#include "common/path_template.h"

#include <fmt/format.h>

#include "common/sequence.h"

namespace farmhand::common {

namespace {

constexpr std::string_view kKnown =
    "path, dir, name, ext, frame, first, last, frames, event, meta.KEY";

// Walks the template, calling on_text for literal runs and on_key for placeholders.
template <typename Text, typename Key>
Result<void> walk(std::string_view text, Text&& on_text, Key&& on_key) {
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      on_text("{");
      i += 2;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      on_text("}");
      i += 2;
    } else if (c == '{') {
      size_t close = text.find('}', i);
      if (close == std::string_view::npos) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("unclosed '{{' in '{}'", printable(text)));
      }
      std::string_view key = text.substr(i + 1, close - i - 1);
      if (auto ok = on_key(key); !ok) return ok;
      i = close + 1;
    } else if (c == '}') {
      return fail(
          ErrorCode::kInvalidArgument,
          fmt::format("unmatched '}}' in '{}' (write }}}} for a literal brace)", printable(text)));
    } else {
      size_t next = text.find_first_of("{}", i);
      if (next == std::string_view::npos) next = text.size();
      on_text(text.substr(i, next - i));
      i = next;
    }
  }
  return {};
}

bool is_plain_key(std::string_view key) {
  for (std::string_view known :
       {"path", "dir", "name", "ext", "frame", "first", "last", "frames", "event"}) {
    if (key == known) return true;
  }
  return false;
}

Result<void> check_key(std::string_view key) {
  if (is_plain_key(key)) return {};
  if (key.substr(0, 5) == "meta." && is_meta_key(key.substr(5))) return {};
  return fail(ErrorCode::kInvalidArgument,
              fmt::format("unknown placeholder {{{}}} (known: {})", printable(key), kKnown));
}

Result<void> check_meta_value(std::string_view key, std::string_view value) {
  bool bad = value.empty() || value == "." || value == ".." || value.size() > 255;
  for (char c : value) {
    if (c == '/' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) bad = true;
  }
  if (bad) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("meta.{} value '{}' cannot be part of a path", key, printable(value)));
  }
  return {};
}

}  // namespace

bool is_meta_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Result<void> check_path_template(std::string_view text) {
  return walk(
      text, [](std::string_view) {}, [](std::string_view key) { return check_key(key); });
}

Result<std::string> expand_path_template(std::string_view text, const PathVars& vars) {
  std::string out;
  auto ok = walk(
      text, [&](std::string_view literal) { out += literal; },
      [&](std::string_view key) -> Result<void> {
        if (auto known = check_key(key); !known) return known;
        if (key.substr(0, 5) == "meta.") {
          std::string name(key.substr(5));
          auto it = vars.meta.find(name);
          if (it == vars.meta.end()) {
            return fail(ErrorCode::kInvalidArgument,
                        fmt::format("the publish has no meta.{} for {{meta.{}}}", name, name));
          }
          if (auto safe = check_meta_value(name, it->second); !safe) return safe;
          out += it->second;
          return {};
        }
        const std::string* value = key == "path"     ? &vars.path
                                   : key == "dir"    ? &vars.dir
                                   : key == "name"   ? &vars.name
                                   : key == "ext"    ? &vars.ext
                                   : key == "frame"  ? &vars.frame
                                   : key == "first"  ? &vars.first
                                   : key == "last"   ? &vars.last
                                   : key == "frames" ? &vars.frames
                                                     : &vars.event;
        if (value->empty() && key != "ext" && key != "dir" && key != "event") {
          return fail(
              ErrorCode::kInvalidArgument,
              key == "frame" ? fmt::format("{{frame}}: {} is not a sequence", vars.path)
              : key == "name"
                  ? fmt::format("{{name}}: {} has no name before its frame number", vars.path)
                  : fmt::format("{{{}}}: no frames of {} known", key, vars.path));
        }
        out += *value;
        return {};
      });
  if (!ok) return fail(ok.error());
  return out;
}

Result<PathVars> path_vars(const std::string& path) {
  auto pattern = SequencePattern::parse(path);
  if (!pattern) return fail(pattern.error());
  PathVars vars;
  vars.path = path;
  vars.dir = pattern->dir;
  while (vars.dir.size() > 1 && vars.dir.back() == '/') vars.dir.pop_back();
  std::string name = pattern->prefix;
  std::string ext;
  if (pattern->is_single_file()) {
    auto dot = name.rfind('.');
    if (dot != std::string::npos && dot > 0) {
      ext = name.substr(dot + 1);
      name.resize(dot);
    }
  } else {
    // "sh010_comp_v003." + "####" + ".exr": the separator before the number goes.
    while (!name.empty() && (name.back() == '.' || name.back() == '_' || name.back() == '-')) {
      name.pop_back();
    }
    // Text between the number and the extension stays in the name: shot.####_bty.exr and
    // shot.####_spec.exr are shot_bty and shot_spec, so their outputs do not collide.
    const std::string& suffix = pattern->suffix;
    auto dot = suffix.rfind('.');
    if (dot != std::string::npos) ext = suffix.substr(dot + 1);
    name += suffix.substr(0, dot);
    vars.frame = pattern->padding == 4   ? "####"
                 : pattern->padding <= 1 ? "%d"
                                         : fmt::format("%0{}d", pattern->padding);
    if (pattern->frames && !pattern->frames->empty()) {
      vars.first = std::to_string(pattern->frames->frame_at(0));
      vars.last = std::to_string(pattern->frames->frame_at(pattern->frames->size() - 1));
      vars.frames = pattern->frames->to_string();
    }
  }
  vars.name = name;
  vars.ext = ext;
  return vars;
}

}  // namespace farmhand::common
