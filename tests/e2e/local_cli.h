// What the end-to-end tests of broker-free commands (`farmhand seq ls`,
// `farmhand openjd ...`) share: the built binary, a scratch directory, and a
// run of `farmhand ARGS` through the shell with its output and exit code.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/wait.h>

namespace farmhand::e2e {

inline std::filesystem::path bin_dir() {
  if (const char* dir = std::getenv("FARMHAND_BIN_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // Run by hand from the build tree: build/tests/e2e/<test> -> build/bin.
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path().parent_path() /
         "bin";
}

// A scratch directory removed when the test ends.
class ScratchDir {
 public:
  ScratchDir() {
    char pattern[] = "/tmp/fh-cli-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    path_ = made != nullptr ? made : "";
  }

  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }

  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes `text` to `name` in the directory; its path.
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return path_ / name;
  }

  void touch(const std::string& name) const { std::ofstream(path_ / name).put('x'); }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `farmhand ARGS [< stdin_file]` through the shell, capturing stdout,
// stderr (by way of a file in `scratch`) and the exit code.
inline CommandResult run_farmhand(const std::vector<std::string>& args, const ScratchDir& scratch,
                                  const std::string& stdin_file = "") {
  const std::filesystem::path err_file = scratch.path() / "stderr.txt";
  std::string command = shell_quoted((bin_dir() / "farmhand").string());
  for (const auto& arg : args) command += " " + shell_quoted(arg);
  command += " 2>" + shell_quoted(err_file.string());
  if (!stdin_file.empty()) command += " <" + shell_quoted(stdin_file);
  CommandResult run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return run;
  }
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.out.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  std::stringstream text;
  text << in.rdbuf();
  run.err = text.str();
  std::error_code ec;
  std::filesystem::remove(err_file, ec);
  return run;
}

}  // namespace farmhand::e2e
