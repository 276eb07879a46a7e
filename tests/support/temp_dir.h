// TempDir: a scratch directory under $TMPDIR, removed with everything in it
// when the test ends. Header-only; for unit tests that write files.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <stdlib.h>

namespace farmhand::testing_support {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "fh-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : std::string();
  }

  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

  std::string file(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

  // Every entry's name, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

}  // namespace farmhand::testing_support
