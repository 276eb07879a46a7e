// Where the Open Job Description conformance cases are, and which files of
// them a test reads: ../shared/data/openjd-conformance/2023-09 beside the
// source tree (FARMHAND_SOURCE_DIR, set by ctest; run by hand, the tree this
// file is in). Never copied into the repository.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace farmhand::openjd::testing {

inline std::filesystem::path conformance_dir() {
  const char* source = std::getenv("FARMHAND_SOURCE_DIR");
  std::filesystem::path root =
      source != nullptr && *source != '\0'
          ? std::filesystem::path(source)
          : std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
  return root / ".." / "shared" / "data" / "openjd-conformance" / "2023-09";
}

// The files under FEATURE/<kind>/ for each kind, whose names end in `suffix`,
// relative to conformance_dir() and sorted; none when the data is missing.
inline std::vector<std::string> conformance_files(std::initializer_list<const char*> kinds,
                                                  std::string_view suffix = "") {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  const fs::path dir = conformance_dir();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& feature : fs::directory_iterator(dir)) {
    for (const char* kind : kinds) {
      const fs::path sub = feature.path() / kind;
      if (!fs::is_directory(sub, ec)) continue;
      for (const auto& file : fs::directory_iterator(sub)) {
        const std::string name = file.path().filename().string();
        if (!file.is_regular_file() || name.size() < suffix.size() ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
          continue;
        }
        out.push_back(fs::relative(file.path(), dir).string());
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace farmhand::openjd::testing
