// What several end-to-end tests share: command templates that leave a trace
// the test can read, and readers of those traces.
#pragma once

#include <fstream>
#include <string>
#include <vector>

namespace farmhand::e2e {

// Each task: under a lock, count itself in ($dir/now) and append the count to
// $dir/seen; hold for a moment, as a licensed render would; count itself out.
// The largest number in $dir/seen is the most tasks that ran at once.
inline const char* const kCountingCommand =
    "  counted:\n"
    "    argv: [/bin/sh, -c, '( flock 9; n=$(cat \"$0/now\" 2>/dev/null || echo 0); "
    "n=$((n+1)); echo $n > \"$0/now\"; echo $n >> \"$0/seen\" ) 9>\"$0/lock\"; sleep 0.3; "
    "( flock 9; n=$(cat \"$0/now\"); echo $((n-1)) > \"$0/now\" ) 9>\"$0/lock\"', \"{dir}\"]\n"
    "    params:\n"
    "      dir: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

inline std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

inline std::vector<int> seen_counts(const std::string& path) {
  std::vector<int> out;
  std::ifstream in(path);
  for (int n = 0; in >> n;) out.push_back(n);
  return out;
}

}  // namespace farmhand::e2e
