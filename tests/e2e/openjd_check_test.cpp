// `farmhand openjd check` end to end: the real binary on template files, no
// broker. Valid: exit 0 and one line on stdout; invalid: exit 1 and one line on
// stderr naming the field and the rule; unreadable: exit 2.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace {

namespace fs = std::filesystem;

fs::path bin_dir() {
  if (const char* dir = std::getenv("FARMHAND_BIN_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // Run by hand from the build tree: build/tests/e2e/<test> -> build/bin.
  return fs::read_symlink("/proc/self/exe").parent_path().parent_path().parent_path() / "bin";
}

// A scratch directory removed when the test ends.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/fh-openjd-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }

  ~TempDir() { fs::remove_all(path_); }

  const fs::path& path() const { return path_; }

  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return path_ / name;
  }

 private:
  fs::path path_;
};

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `farmhand ARGS [< stdin_file]` through the shell.
CommandResult farmhand(const std::vector<std::string>& args, const TempDir& scratch,
                       const std::string& stdin_file = "") {
  const fs::path err_file = scratch.path() / "stderr.txt";
  std::string command = quoted((bin_dir() / "farmhand").string());
  for (const auto& arg : args) command += " " + quoted(arg);
  command += " 2>" + quoted(err_file.string());
  if (!stdin_file.empty()) command += " <" + quoted(stdin_file);
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
  fs::remove(err_file);
  return run;
}

constexpr const char* kValid = R"(specificationVersion: jobtemplate-2023-09
name: Render
parameterDefinitions:
- name: Frames
  type: STRING
  default: "1-10"
steps:
- name: A
  script:
    actions:
      onRun:
        command: echo
- name: B
  dependencies:
  - dependsOn: A
  script:
    actions:
      onRun:
        command: echo
        args: ["{{Param.Frames}}"]
)";

TEST(OpenJdCheckTest, ValidTemplatePrintsOneLineAndExitsZero) {
  TempDir scratch;
  const fs::path file = scratch.write("job.yaml", kValid);
  CommandResult run = farmhand({"openjd", "check", file.string()}, scratch);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "valid job template \"Render\": 2 steps, 1 parameter\n");
  EXPECT_EQ(run.err, "");

  CommandResult json = farmhand({"--json", "openjd", "check", file.string()}, scratch);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto parsed = nlohmann::json::parse(json.out);
  EXPECT_EQ(parsed["kind"], "job");
  EXPECT_EQ(parsed["name"], "Render");
  EXPECT_EQ(parsed["steps"], 2);

  CommandResult piped = farmhand({"openjd", "check", "-"}, scratch, file.string());
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, run.out);
}

TEST(OpenJdCheckTest, InvalidTemplateExitsOneWithOneLineNamingTheField) {
  TempDir scratch;
  std::string text = kValid;
  text.replace(text.find("dependsOn: A"), 12, "dependsOn: B");
  const fs::path file = scratch.write("cycle.yaml", text);
  CommandResult run = farmhand({"openjd", "check", file.string()}, scratch);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "farmhand: steps[1].dependencies[0].dependsOn: a step cannot depend on itself\n");
}

TEST(OpenJdCheckTest, UnreadableTemplateIsAUsageError) {
  TempDir scratch;
  CommandResult missing =
      farmhand({"openjd", "check", (scratch.path() / "nope.yaml").string()}, scratch);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err.find("farmhand: cannot open "), 0u) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);
  CommandResult directory = farmhand({"openjd", "check", scratch.path().string()}, scratch);
  EXPECT_EQ(directory.exit_code, 2) << directory.err;
}

}  // namespace
