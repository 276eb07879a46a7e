// `farmhand openjd check` and `farmhand openjd tasks` end to end: the real
// binary on template files, no broker. Valid: exit 0 and one line on stdout; invalid: exit 1 and
// one line on stderr naming the field and the rule; unreadable: exit 2.
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

constexpr const char* kFrames = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: "{{Param.Shot}} render"
parameterDefinitions:
- name: Shot
  type: STRING
- name: End
  type: INT
  default: 12
steps:
- name: Render
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: CHUNK[INT]
      range: "1-{{Param.End}}"
      chunks:
        defaultTaskCount: 5
        rangeConstraint: CONTIGUOUS
    - name: Layer
      type: STRING
      range: [fg, bg]
    combination: Layer * Frame
  script:
    actions:
      onRun:
        command: render
        args: ["{{Task.Param.Layer}}", "{{Task.Param.Frame}}"]
- name: Movie
  dependencies:
  - dependsOn: Render
  script:
    actions:
      onRun:
        command: encode
)";

TEST(OpenJdTasksTest, PrintsEachStepsTasksAsTheTemplateAndParametersMakeThem) {
  TempDir scratch;
  const fs::path file = scratch.write("frames.yaml", kFrames);
  CommandResult run =
      farmhand({"--json", "openjd", "tasks", file.string(), "-p", "Shot=sh010"}, scratch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto job = nlohmann::json::parse(run.out);
  EXPECT_EQ(job["name"], "sh010 render");
  ASSERT_EQ(job["steps"].size(), 2u);
  EXPECT_EQ(job["steps"][0]["name"], "Render");
  // 1-12 in chunks of 5 is three balanced chunks, for each layer.
  const auto expected = nlohmann::json::parse(R"([
    {"Frame": "1-4", "Layer": "fg"}, {"Frame": "5-8", "Layer": "fg"}, {"Frame": "9-12", "Layer": "fg"},
    {"Frame": "1-4", "Layer": "bg"}, {"Frame": "5-8", "Layer": "bg"}, {"Frame": "9-12", "Layer": "bg"}])");
  EXPECT_EQ(job["steps"][0]["tasks"], expected);
  EXPECT_EQ(job["steps"][1]["tasks"], nlohmann::json::parse("[{}]"));

  CommandResult text =
      farmhand({"openjd", "tasks", file.string(), "-p", "Shot=sh010", "--param", "End=3"}, scratch);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out,
            "job \"sh010 render\"\nstep \"Render\": 2 tasks\n  Frame=1-3 Layer=fg\n"
            "  Frame=1-3 Layer=bg\nstep \"Movie\": 1 task\n  (no task parameters)\n");
}

TEST(OpenJdTasksTest, ABadParameterIsOneLineAndAMalformedFlagAUsageError) {
  TempDir scratch;
  const fs::path file = scratch.write("frames.yaml", kFrames);
  CommandResult missing = farmhand({"openjd", "tasks", file.string()}, scratch);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err, "farmhand: parameter Shot: no value given and no default\n");
  CommandResult big =
      farmhand({"openjd", "tasks", file.string(), "-p", "Shot=a", "-p", "End=1x"}, scratch);
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_EQ(big.err, "farmhand: parameter End: \"1x\" is not an integer in the 64-bit range\n");
  CommandResult malformed = farmhand({"openjd", "tasks", file.string(), "-p", "Shot"}, scratch);
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_EQ(malformed.err, "farmhand: -p Shot: not NAME=VALUE\n");
}

}  // namespace
