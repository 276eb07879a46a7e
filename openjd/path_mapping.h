// OpenJD path mapping (How Jobs Are Run, "Path Mapping"): rules that turn a
// path as the submitter wrote it into where it is on this worker, applied to
// PATH job and task parameters (`Param.*`, `Task.Param.*`, never `RawParam.*`)
// and written for the actions to read in the session's working directory.
//
// A rule matches a path whose leading components are the rule's source path,
// compared component by component as the source's format reads them: POSIX
// splits on '/' and compares exactly; WINDOWS splits on '\' and '/', takes a
// drive ("C:") or UNC share ("\\server\share") as the first component and
// compares without case. The matched components are replaced by the
// destination's, the rest are joined with '/' (a POSIX worker), and a trailing
// separator is kept. Rules are tried longest source path first (most
// components; equal lengths keep their given order) and the first match wins.
//
// Pure: no files are read or written. Thread-safe: no shared state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace farmhand::openjd {

enum class PathFormat { kPosix, kWindows };

struct PathMappingRule {
  PathFormat source_path_format = PathFormat::kPosix;
  std::string source_path;
  std::string destination_path;
};

// `rules` in the order they are tried: by decreasing source path length,
// stable otherwise.
std::vector<PathMappingRule> order_path_mapping_rules(std::vector<PathMappingRule> rules);

// `path` mapped by the first of `rules` (already ordered) that matches it, or
// nullopt when none does.
std::optional<std::string> map_path(const std::vector<PathMappingRule>& rules,
                                    std::string_view path);

// The rules file's contents:
//   {"version": "pathmapping-1.0", "path_mapping_rules": [{"source_path_format":
//    "POSIX", "source_path": ..., "destination_path": ...}, ...]}
std::string path_mapping_json(const std::vector<PathMappingRule>& rules);

// The rules of such a file (as `openjd run --path-mapping-rules` and the
// reference tools take them); an error names what is wrong:
//   path_mapping_rules[1].source_path_format: "MAC" is not POSIX or WINDOWS
[[nodiscard]] Result<std::vector<PathMappingRule>> parse_path_mapping_json(std::string_view text);

}  // namespace farmhand::openjd
