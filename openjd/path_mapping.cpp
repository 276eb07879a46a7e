#include "openjd/path_mapping.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace farmhand::openjd {

namespace {

// The components of `text` split on `separator`, without empty and "." ones.
void append_components(std::string_view text, char separator, std::vector<std::string>& parts) {
  while (!text.empty()) {
    const size_t end = text.find(separator);
    const std::string_view part = text.substr(0, end);
    if (!part.empty() && part != ".") parts.emplace_back(part);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

// As Python's PurePosixPath(path).parts: "/" first for an absolute path.
std::vector<std::string> posix_parts(std::string_view path) {
  std::vector<std::string> parts;
  if (!path.empty() && path.front() == '/') parts.emplace_back("/");
  append_components(path, '/', parts);
  return parts;
}

// As Python's PureWindowsPath(path).parts: the drive ("C:" or
// "\\server\share") and root ("\") together first, then the components.
std::vector<std::string> windows_parts(std::string_view path) {
  std::string text(path);
  std::replace(text.begin(), text.end(), '/', '\\');
  std::string_view rest = text;
  std::string anchor;
  const auto is_letter = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  if (rest.size() >= 2 && is_letter(rest[0]) && rest[1] == ':') {
    anchor = std::string(rest.substr(0, 2));
    rest.remove_prefix(2);
  } else if (rest.size() > 2 && rest.substr(0, 2) == "\\\\" && rest[2] != '\\') {
    // \\server\share: the share is part of the drive.
    size_t server_end = rest.find('\\', 2);
    size_t share_end =
        server_end == std::string_view::npos ? server_end : rest.find('\\', server_end + 1);
    const size_t drive_end = share_end == std::string_view::npos ? rest.size() : share_end;
    // A share always has a root, written or not.
    anchor = std::string(rest.substr(0, drive_end)) + '\\';
    rest.remove_prefix(drive_end);
  } else if (!rest.empty() && rest.front() == '\\') {
    anchor += '\\';
  }
  std::vector<std::string> parts;
  if (!anchor.empty()) parts.push_back(std::move(anchor));
  append_components(rest, '\\', parts);
  return parts;
}

std::vector<std::string> parts_of(PathFormat format, std::string_view path) {
  return format == PathFormat::kPosix ? posix_parts(path) : windows_parts(path);
}

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool same_part(PathFormat format, const std::string& a, const std::string& b) {
  if (format == PathFormat::kPosix) return a == b;
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

bool ends_with_separator(PathFormat format, std::string_view path) {
  if (path.empty()) return false;
  return path.back() == '/' || (format == PathFormat::kWindows && path.back() == '\\');
}

}  // namespace

std::vector<PathMappingRule> order_path_mapping_rules(std::vector<PathMappingRule> rules) {
  std::stable_sort(rules.begin(), rules.end(),
                   [](const PathMappingRule& a, const PathMappingRule& b) {
                     return parts_of(a.source_path_format, a.source_path).size() >
                            parts_of(b.source_path_format, b.source_path).size();
                   });
  return rules;
}

std::optional<std::string> map_path(const std::vector<PathMappingRule>& rules,
                                    std::string_view path) {
  for (const PathMappingRule& rule : rules) {
    const PathFormat format = rule.source_path_format;
    const std::vector<std::string> source = parts_of(format, rule.source_path);
    const std::vector<std::string> parts = parts_of(format, path);
    if (source.empty() || parts.size() < source.size()) continue;
    if (!std::equal(source.begin(), source.end(), parts.begin(),
                    [format](const std::string& a, const std::string& b) {
                      return same_part(format, a, b);
                    })) {
      continue;
    }
    std::vector<std::string> mapped = posix_parts(rule.destination_path);
    mapped.insert(mapped.end(), parts.begin() + static_cast<ptrdiff_t>(source.size()), parts.end());
    std::string result;
    for (const std::string& part : mapped) {
      if (!result.empty() && result.back() != '/') result += '/';
      result += part;
    }
    if (result.empty()) return std::string(".");
    if (ends_with_separator(format, path) && result.back() != '/') result += '/';
    return result;
  }
  return std::nullopt;
}

std::string path_mapping_json(const std::vector<PathMappingRule>& rules) {
  nlohmann::json list = nlohmann::json::array();
  for (const PathMappingRule& rule : rules) {
    list.push_back({
        {"source_path_format", rule.source_path_format == PathFormat::kPosix ? "POSIX" : "WINDOWS"},
        {"source_path", rule.source_path},
        {"destination_path", rule.destination_path},
    });
  }
  nlohmann::json file = {{"version", "pathmapping-1.0"}, {"path_mapping_rules", std::move(list)}};
  // Paths are bytes as given: an invalid UTF-8 one is replaced, not thrown.
  return file.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<PathMappingRule>> parse_path_mapping_json(std::string_view text) {
  const nlohmann::json file = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [](const std::string& where, const std::string& what) {
    return fail(ErrorCode::kInvalidArgument, where + ": " + what);
  };
  if (!file.is_object()) return bad("path mapping rules", "not a JSON object");
  if (!file.contains("version") || file["version"] != "pathmapping-1.0") {
    return bad("version", "must be \"pathmapping-1.0\"");
  }
  std::vector<PathMappingRule> rules;
  if (!file.contains("path_mapping_rules")) return rules;
  const nlohmann::json& list = file["path_mapping_rules"];
  if (!list.is_array()) return bad("path_mapping_rules", "not a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = fmt::format("path_mapping_rules[{}]", i);
    const nlohmann::json& rule = list[i];
    if (!rule.is_object()) return bad(at, "not an object");
    for (const char* key : {"source_path_format", "source_path", "destination_path"}) {
      if (!rule.contains(key) || !rule[key].is_string() || rule[key].get<std::string>().empty()) {
        return bad(at + "." + key, "must be a non-empty string");
      }
    }
    PathMappingRule out;
    const std::string format = rule["source_path_format"].get<std::string>();
    if (format == "POSIX") {
      out.source_path_format = PathFormat::kPosix;
    } else if (format == "WINDOWS") {
      out.source_path_format = PathFormat::kWindows;
    } else {
      return bad(at + ".source_path_format",
                 fmt::format("\"{}\" is not POSIX or WINDOWS", printable(format)));
    }
    out.source_path = rule["source_path"].get<std::string>();
    out.destination_path = rule["destination_path"].get<std::string>();
    rules.push_back(std::move(out));
  }
  return rules;
}

}  // namespace farmhand::openjd
