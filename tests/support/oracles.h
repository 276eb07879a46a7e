// Oracles for end-to-end tests: the shared test data and the peer tools
// (oiiotool, ffprobe) that judge what farmhand wrote.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace farmhand::e2e {

// ../shared/data/openexr-images beside the source tree (FARMHAND_SOURCE_DIR, set by
// ctest; run by hand, the tree this header is in).
inline std::string data_dir() {
  const char* source = std::getenv("FARMHAND_SOURCE_DIR");
  if (source != nullptr && *source != '\0') {
    return std::string(source) + "/../shared/data/openexr-images";
  }
  std::string root = __FILE__;  // ROOT/tests/support/oracles.h
  root.resize(root.size() - std::string_view("tests/support/oracles.h").size());
  return root + "../shared/data/openexr-images";
}

// stdout of a shell command line (the oracle tools), or "" if it failed.
inline std::string run(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) return out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe.get())) out.append(buf.data(), n);
  return out;
}

// "WxH" of an image according to oiiotool, or "" when it cannot read it.
inline std::string image_size(const std::string& path) {
  std::string info = run("oiiotool --info '" + path + "' 2>/dev/null");
  auto colon = info.find(':');
  if (colon == std::string::npos) return "";
  std::string rest = info.substr(colon + 1);
  unsigned w = 0, h = 0;
  if (std::sscanf(rest.c_str(), " %u x %u", &w, &h) != 2) return "";
  return std::to_string(w) + "x" + std::to_string(h);
}

// `count` plates in `dir` (plate.0001.exr...): links to the 8 Beachball frames in
// turn, a sequence as long as a test needs.
inline void link_plates(const std::string& dir, int count) {
  std::filesystem::create_directories(dir);
  for (int frame = 1; frame <= count; ++frame) {
    char name[32];
    std::snprintf(name, sizeof(name), "plate.%04d.exr", frame);
    char source[32];
    std::snprintf(source, sizeof(source), "singlepart.%04d.exr", (frame - 1) % 8 + 1);
    std::filesystem::create_symlink(std::filesystem::absolute(data_dir() + "/Beachball/" + source),
                                    std::filesystem::path(dir) / name);
  }
}

}  // namespace farmhand::e2e
