// `farmhand openjd check`, `tasks` and `run` end to end: the real
// binary on template files, no broker. Valid: exit 0 and one line on stdout; invalid: exit 1 and
// one line on stderr naming the field and the rule; unreadable: exit 2.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/local_cli.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace {

namespace fs = std::filesystem;
using farmhand::e2e::bin_dir;
using farmhand::e2e::CommandResult;
using farmhand::e2e::run_farmhand;
using farmhand::e2e::ScratchDir;

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
  ScratchDir scratch;
  const fs::path file = scratch.write("job.yaml", kValid);
  CommandResult run = run_farmhand({"openjd", "check", file.string()}, scratch);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "valid job template \"Render\": 2 steps, 1 parameter\n");
  EXPECT_EQ(run.err, "");

  CommandResult json = run_farmhand({"--json", "openjd", "check", file.string()}, scratch);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto parsed = nlohmann::json::parse(json.out);
  EXPECT_EQ(parsed["kind"], "job");
  EXPECT_EQ(parsed["name"], "Render");
  EXPECT_EQ(parsed["steps"], 2);

  CommandResult piped = run_farmhand({"openjd", "check", "-"}, scratch, file.string());
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, run.out);
}

TEST(OpenJdCheckTest, InvalidTemplateExitsOneWithOneLineNamingTheField) {
  ScratchDir scratch;
  std::string text = kValid;
  text.replace(text.find("dependsOn: A"), 12, "dependsOn: B");
  const fs::path file = scratch.write("cycle.yaml", text);
  CommandResult run = run_farmhand({"openjd", "check", file.string()}, scratch);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "farmhand: steps[1].dependencies[0].dependsOn: a step cannot depend on itself\n");
}

TEST(OpenJdCheckTest, UnreadableTemplateIsAUsageError) {
  ScratchDir scratch;
  CommandResult missing =
      run_farmhand({"openjd", "check", (scratch.path() / "nope.yaml").string()}, scratch);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err.find("farmhand: cannot open "), 0u) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);
  CommandResult directory = run_farmhand({"openjd", "check", scratch.path().string()}, scratch);
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
  ScratchDir scratch;
  const fs::path file = scratch.write("frames.yaml", kFrames);
  CommandResult run =
      run_farmhand({"--json", "openjd", "tasks", file.string(), "-p", "Shot=sh010"}, scratch);
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

  CommandResult text = run_farmhand(
      {"openjd", "tasks", file.string(), "-p", "Shot=sh010", "--param", "End=3"}, scratch);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out,
            "job \"sh010 render\"\nstep \"Render\": 2 tasks\n  Frame=1-3 Layer=fg\n"
            "  Frame=1-3 Layer=bg\nstep \"Movie\": 1 task\n  (no task parameters)\n");
}

TEST(OpenJdTasksTest, ABadParameterIsOneLineAndAMalformedFlagAUsageError) {
  ScratchDir scratch;
  const fs::path file = scratch.write("frames.yaml", kFrames);
  CommandResult missing = run_farmhand({"openjd", "tasks", file.string()}, scratch);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err, "farmhand: parameter Shot: no value given and no default\n");
  CommandResult big =
      run_farmhand({"openjd", "tasks", file.string(), "-p", "Shot=a", "-p", "End=1x"}, scratch);
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_EQ(big.err, "farmhand: parameter End: \"1x\" is not an integer in the 64-bit range\n");
  CommandResult malformed = run_farmhand({"openjd", "tasks", file.string(), "-p", "Shot"}, scratch);
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_EQ(malformed.err, "farmhand: -p Shot: not NAME=VALUE\n");
}

constexpr const char* kRun = R"(specificationVersion: jobtemplate-2023-09
extensions: [REDACTED_ENV_VARS]
name: Local
parameterDefinitions:
- name: Fail
  type: INT
  default: 0
jobEnvironments:
- name: Licence
  script:
    actions:
      onEnter:
        command: /bin/sh
        args: ["-c", "echo 'openjd_redacted_env: TOKEN=s3cr3t'"]
steps:
- name: Render
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "1-2"
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["{{Task.File.Run}}", "{{Task.Param.Frame}}"]
    embeddedFiles:
    - name: Run
      type: TEXT
      data: |
        echo "frame $1 token $TOKEN"
        exit {{Param.Fail}}
)";

TEST(OpenJdRunTest, RunsTheJobHereAndSaysWhatFailed) {
  ScratchDir scratch;
  const fs::path file = scratch.write("local.yaml", kRun);
  CommandResult run = run_farmhand({"openjd", "run", file.string()}, scratch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "running job \"Local\"\nopenjd_redacted_env: TOKEN=********\nframe 1 token "
            "********\nframe 2 token ********\njob \"Local\" succeeded: 2 tasks\n");
  EXPECT_EQ(run.err, "");

  CommandResult failed = run_farmhand({"openjd", "run", file.string(), "-p", "Fail=3"}, scratch);
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_EQ(failed.out.find("s3cr3t"), std::string::npos) << failed.out;
  EXPECT_EQ(failed.err.rfind("farmhand: job \"Local\" failed after 0 tasks: ", 0), 0u)
      << failed.err;
  EXPECT_EQ(std::count(failed.err.begin(), failed.err.end(), '\n'), 1) << failed.err;
}

TEST(OpenJdRunTest, RunsOneStepAndMapsPathsAsTheRulesSay) {
  ScratchDir scratch;
  const fs::path file = scratch.write("mapped.yaml", R"(specificationVersion: jobtemplate-2023-09
name: Mapped
parameterDefinitions:
- name: Scene
  type: PATH
steps:
- name: Render
  script:
    actions:
      onRun: {command: /bin/echo, args: ["render {{Param.Scene}} as {{RawParam.Scene}}"]}
- name: Movie
  dependencies: [{dependsOn: Render}]
  script:
    actions:
      onRun: {command: /bin/echo, args: ["movie"]}
)");
  const fs::path rules = scratch.write(
      "rules.json",
      R"({"version": "pathmapping-1.0", "path_mapping_rules": [{"source_path_format": "WINDOWS",
          "source_path": "Z:\\projects", "destination_path": "/mnt/projects"}]})");
  CommandResult run =
      run_farmhand({"openjd", "run", file.string(), "-p", "Scene=Z:\\projects\\sh010\\comp.nk",
                    "--step", "Render", "--path-mapping-rules", rules.string()},
                   scratch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "running job \"Mapped\"\nrender /mnt/projects/sh010/comp.nk as "
            "Z:\\projects\\sh010\\comp.nk\njob \"Mapped\" succeeded: 1 task\n");

  CommandResult unknown =
      run_farmhand({"openjd", "run", file.string(), "-p", "Scene=/a", "--step", "Comp"}, scratch);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err,
            "farmhand: job \"Mapped\" failed after 0 tasks: the template has no step \"Comp\"\n");
  const fs::path bad = scratch.write("bad.json", R"({"version": "pathmapping-2.0"})");
  CommandResult bad_rules = run_farmhand(
      {"openjd", "run", file.string(), "-p", "Scene=/a", "--path-mapping-rules", bad.string()},
      scratch);
  EXPECT_EQ(bad_rules.exit_code, 2);
  EXPECT_EQ(bad_rules.err,
            "farmhand: " + bad.string() + ": version: must be \"pathmapping-1.0\"\n");
}

}  // namespace
